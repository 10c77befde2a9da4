import Data
import Model

/// How pretraining draws each sample's invariance vector.
public enum InvarianceDraw: String, OptionChoice {
  /// A corner of [0, 1]^k (the paper's pretraining).
  case corners
  /// Uniform in [0, 1]^k.
  case uniform
}

/// The contrastive objective on top of the conditioned encoder.
public enum AmortisedObjective: String, OptionChoice {
  /// NT-Xent over the global batch (`AmortisedMethod`).
  case simclr
  /// MoCo-v2: a momentum copy of the conditioned encoder and head gives the keys, InfoNCE
  /// against the queue (`MoCoMethod` with a conditioned encoder; MoCo's options apply).
  case moco
}

extension Options {
  public var amortisedObjective: ConfigOption<AmortisedObjective> { ConfigOption(
    "amortisedObjective", default: .simclr, resume: .mustMatch,
    help:
      "Amortised: the objective on the conditioned encoder: simclr (NT-Xent over the global batch) or moco (MoCo-v2's momentum key encoder and queue; the moco options apply, --key-bn sync only).") }
  public var invarianceDraw: ConfigOption<InvarianceDraw> { ConfigOption(
    "invarianceDraw", default: .corners, resume: .mustMatch,
    help:
      "Amortised: each sample's invariance vector v (appearance, spatial): corners (each entry 0 or 1, as the paper pretrains) or uniform in [0, 1]².") }
  public var hyperHidden: ConfigOption<Int> { ConfigOption(
    "hyperHidden", default: 32, resume: .mustMatch,
    help: "Amortised: hidden width of each block's hypernetwork (v → FiLM scales and shifts).", check: positive) }
}

/// Amortised invariance learning (Chavhan et al., ICLR 2023) with SimCLR: the encoder is
/// `ConditionedConv4`, conditioned on each sample's invariance vector v ∈ [0, 1]^k
/// (k = 2: images' `ImageInvarianceGroup` appearance, spatial; audio's `AudioInvarianceGroup`
/// spectral, temporal, on log-mel spectrograms). The data side draws v per sample from
/// `KeyedRandom(seed, epoch, sample, .invariance)` (so the same on any rank count, DESIGN
/// invariant 6), makes both views with each group's augmentations scaled by its entry
/// (`SimCLRAugment.Config.grouped`, `WaveAugmentConfig.grouped`) and hands v in the batch's
/// `transforms` rows; both views of
/// a sample are encoded with its v, then projection head → NT-Xent over the global batch, as
/// SimCLR (invariants 3, 4, 9).
///
/// Outside training (probes, `eval linear`, export users) the encoder runs at v = 1 (SimCLR's
/// full invariances) unless told otherwise; `eval amortised` learns v per task.
/// Arena: `encoder.*` (with `encoder.hyper{i}.*`), `head.*`; no state beyond it.
public final class AmortisedMethod: SSLMethod {
  public static var options: [any AnyConfigOption] {
    [Options().amortisedObjective, Options().temperature, Options().invarianceDraw, Options().hyperHidden]
  }

  /// The conditioned encoder of a configuration (on the trained arena, or a momentum copy's).
  static func makeEncoder(_ config: PretrainConfig, arena: ParameterArena, collective: Collective?) -> ConditionedConv4 {
    let shape = config.sampleShape
    return ConditionedConv4(
      arena: arena, prefix: "encoder", inChannels: shape.c, width: config.conv4Width, inputSize: shape.h, inputWidth: shape.w,
      invarianceDim: groupNames(config).count, hidden: config.hyperHidden, makeNorm: SimCLRNetwork.norm(arena, collective))
  }

  public static func validate(_ config: PretrainConfig) throws {
    guard config.model == .conv4 else {
      throw ConfigError(message: "--method amortised: --model must be conv4 (its conditioned encoder), not \(config.model)")
    }
    guard config.augmentSampling == .auto else {
      throw ConfigError(
        message: "--method amortised: --augment-sampling must be auto (views follow each sample's invariance vector), not \(config.augmentSampling)")
    }
    if config.amortisedObjective == .moco {
      guard config.keyBN == .sync else {
        throw ConfigError(
          message: "--method amortised --amortised-objective moco: --key-bn must be sync (shuffling would have to permute the invariance vectors with the key views)")
      }
      try MoCoMethod.validate(config)
    }
  }

  /// The vector the encoder uses outside training steps: every entry 1.
  public var defaultInvariance: [Float] { [Float](repeating: 1, count: conditioned.invarianceDim) }

  /// The names of v's entries for the configured data: images' (appearance, spatial) or
  /// audio's (spectral, temporal); both have k = 2.
  public static func groupNames(_ config: PretrainConfig) -> [String] {
    config.isAudio ? AudioInvarianceGroup.allCases.map(\.name) : ImageInvarianceGroup.allCases.map(\.name)
  }

  public let arena = ParameterArena()
  public let conditioned: ConditionedConv4
  let head: ProjectionHead
  let loss: NTXentLoss

  public init(config: PretrainConfig, collective: Collective) throws {
    let world = config.syncBN ? collective : nil
    conditioned = Self.makeEncoder(config, arena: arena, collective: world)
    let d = conditioned.featureDim
    head = ProjectionHead(
      arena: arena, prefix: "head", inFeatures: d, hidden: d, outFeatures: config.projectionDim,
      makeNorm: SimCLRNetwork.norm(arena, world))
    arena.allocate(seed: config.seed)
    loss = NTXentLoss(temperature: config.temperature, collective: collective)
    conditioned.setInvariance(defaultInvariance)
  }

  public var encoder: any Encoder { conditioned }
  public var progressReporters: [ProgressHooks] { [head, conditioned] }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    guard let v = batch.transforms else {
      throw TrainError("amortised: the batch carries no invariance vectors (augment sampling is not amortised)")
    }
    let x = batch.views
    conditioned.setInvariance(v, rows: x.shape.n)
    defer { conditioned.setInvariance(defaultInvariance) }
    let h = try conditioned.forward(x, training: true)
    let z = try head.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), training: true)
    let value = try loss.forward(z)
    let dz = try loss.backward()
    scaleInPlace(dz, lossScale)
    let dh = try head.backward(dz)
    _ = try conditioned.backward(dh.reshaped(h.shape))
    return TaskLosses("ntxent", value)
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    let (fe, h) = conditioned.forwardFLOPs(shape)
    let (fh, _) = head.forwardFLOPs(Shape(h.n, h.perSample))
    return fe + fh
  }
}
