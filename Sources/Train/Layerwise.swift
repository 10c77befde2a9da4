import Model

extension Options {
  public var layerwise: ConfigOption<Bool> { ConfigOption(
    "layerwise", default: false, resume: .mustMatch,
    help:
      "ae / dae / parallel-ae / parallel-dae: train conv6 layer-wise: stage k (with its mirrored decoder stage, reconstructing stage k's input) while stages < k stay frozen; stage-steps or stage-epochs per stage.") }
  public var stageEpochs: ConfigOption<Int> { ConfigOption(
    "stageEpochs", default: 0, resume: .mustMatch,
    help: "With layerwise: epochs per stage (0: epochs).", check: nonNegative) }
  public var stageSteps: ConfigOption<Int> { ConfigOption(
    "stageSteps", default: 0, resume: .mustMatch,
    help: "With layerwise: optimizer steps per stage (0: stage-epochs epochs).", check: nonNegative) }
}

/// A method that can train its network one stage at a time (greedy layer-wise training of
/// stacked autoencoders, Bengio et al. 2007): during stage k only stage k's parameters get a
/// gradient and an optimizer update; the stages below are frozen (they only compute stage
/// k's input and target), the stages above wait.
public protocol LayerwiseTrainable: SSLMethod {
  /// Stages, trained in order 0, 1, ….
  var stageCount: Int { get }
  /// The stage the next `forwardBackward` trains (set by the training loop before each step).
  var stage: Int { get set }
  /// The parameter ranges stage `k` trains; every other range is left untouched.
  func trainableRanges(stage k: Int) -> [NamedRange]
}

/// The layer-wise schedule of a run: how many steps each stage lasts and which stage a step
/// belongs to. Each stage has its own warm-up and cosine decay.
public struct LayerwiseSchedule: Equatable, Sendable {
  public let stages: Int
  public let stepsPerStage: Int

  /// - Parameter batchesPerEpoch: global batches in one epoch of the training data.
  public init(config: PretrainConfig, stages: Int, batchesPerEpoch: Int) {
    self.stages = stages
    let epochs = config.stageEpochs > 0 ? config.stageEpochs : config.epochs
    stepsPerStage = config.stageSteps > 0 ? config.stageSteps : epochs * batchesPerEpoch
  }

  public var totalSteps: Int { stages * stepsPerStage }

  /// The stage that step `step` (0-based: steps done before it) trains, and its place in it.
  /// After the last step this is (stages, 0): done.
  public func position(ofStep step: Int) -> (stage: Int, stepInStage: Int) {
    (step / max(stepsPerStage, 1), step % max(stepsPerStage, 1))
  }

  /// Checks the options of a layer-wise run.
  static func validate(_ config: PretrainConfig) throws {
    guard config.layerwise else {
      if config.stageEpochs > 0 || config.stageSteps > 0 {
        throw ConfigError(message: "stage-epochs and stage-steps need --layerwise")
      }
      return
    }
    guard config.method.implementation is any LayerwiseTrainable.Type else {
      let able = Method.allCases.filter { $0.implementation is any LayerwiseTrainable.Type }.map(\.rawValue)
      throw ConfigError(
        message: "--layerwise: method \(config.method.rawValue) does not train layer-wise (methods that do: \(able.joined(separator: ", ")))")
    }
    guard config.maxSteps == 0 else {
      throw ConfigError(message: "--layerwise: use --stage-steps (steps per stage) instead of --max-steps")
    }
  }
}
