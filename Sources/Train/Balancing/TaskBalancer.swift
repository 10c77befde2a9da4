import Data
import Model

/// The multi-task balancing methods (`--mtl`): loss weightings and gradient combinations of
/// the MTLA archive, plus equal weighting as the baseline.
public enum BalancerName: String, OptionChoice {
  /// Equal weighting: the fused backward of the total, unchanged.
  case ew
  /// Uncertainty weighting (Kendall et al. 2018), learned log-variances.
  case uw
  /// Dynamic weight average (Liu et al. 2019), temperature `--dwa-temperature`.
  case dwa
  /// Random loss weighting (Lin et al. 2022): softmax of standard normals, keyed by step.
  case rlw
  /// Geometric loss strategy (Chennupati et al. 2019): the geometric mean of the losses.
  case gls
  /// GradNorm (Chen et al. 2018), asymmetry `--gradnorm-alpha`.
  case gradnorm
  /// PCGrad (Yu et al. 2020): projecting conflicting gradients, task order keyed by step.
  case pcgrad
  /// MGDA (Sener & Koltun 2018): the min-norm point of the gradients' convex hull (Frank-Wolfe).
  case mgda
  /// CAGrad (Liu et al. 2021), `--cagrad-c`.
  case cagrad
  /// Gradient sign dropout (Chen et al. 2020), masks keyed by step.
  case graddrop
  /// IMTL-G (Liu et al. 2021): equal projections on every task's unit gradient.
  case imtl
  /// Gradient vaccine (Wang et al. 2021), EMA `--gradvac-beta`.
  case gradvac
  /// Nash-MTL (Navon et al. 2022): the Nash bargaining solution Gᵀ·G·α = 1/α.
  case nashMTL = "nash-mtl"
  /// MoCo (Fernando et al., ICLR 2023): tracked gradients and a projected λ step.
  case moco
  /// Aligned-MTL (Senushkin et al. 2023): the gradient matrix's condition number made 1.
  case alignedMTL = "aligned-mtl"

  /// Whether the method weights the task losses (and so the task-specific gradients too) or
  /// combines the shared gradients.
  public var kind: BalancerKind {
    switch self {
    case .ew, .uw, .dwa, .rlw, .gls, .gradnorm: .lossWeighting
    default: .gradientCombination
    }
  }
}

/// The two kinds of balancing method.
public enum BalancerKind: Sendable {
  /// Chooses a weight per task; the shared gradient is Σₜ wₜ·gₜ and task t's own parameters'
  /// gradients are multiplied by wₜ.
  case lossWeighting
  /// Computes the shared gradient from the task gradients by another rule; task-specific
  /// parameters get their task's gradient times the weight the method returns (1 unless the
  /// method's paper differentiates a weighted sum of the losses).
  case gradientCombination
}

extension Options {
  public var mtl: ConfigOption<BalancerName> { ConfigOption(
    "mtl", default: .ew, resume: .mustMatch,
    help:
      "Multi-task balancing (mtslvr, supervised): ew (equal weights, the fused backward) or a loss weighting (uw, dwa, rlw, gls, gradnorm) or gradient combination (pcgrad, mgda, cagrad, graddrop, imtl, gradvac, nash-mtl, moco, aligned-mtl) of the per-task gradients of the shared parameters, summed over the ranks first.") }
  public var mtlLR: ConfigOption<Float> { ConfigOption(
    "mtlLR", flag: "mtl-lr", default: 0.025,
    help: "Step size of the learned balancing weights (UW's log-variances, GradNorm's weights; plain gradient descent).",
    check: { $0 > 0 && $0.isFinite ? nil : "must be positive and finite" }) }
  public var dwaTemperature: ConfigOption<Float> { ConfigOption(
    "dwaTemperature", default: 2, help: "DWA's temperature T.",
    check: { $0 > 0 && $0.isFinite ? nil : "must be positive and finite" }) }
  public var gradnormAlpha: ConfigOption<Float> { ConfigOption(
    "gradnormAlpha", default: 1.5, help: "GradNorm's asymmetry α.", check: finiteNonNegative) }
  public var cagradC: ConfigOption<Float> { ConfigOption(
    "cagradC", default: 0.5, help: "CAGrad's radius c (the direction is divided by 1 + c², as LibMTL's rescale 1).",
    check: finiteNonNegative) }
  public var gradvacBeta: ConfigOption<Float> { ConfigOption(
    "gradvacBeta", default: 0.5, help: "GradVac's EMA rate β of the target similarities.",
    check: { (0...1).contains($0) ? nil : "must be in [0, 1]" }) }

  /// The balancing options, listed by the multi-task methods.
  static var balancing: [any AnyConfigOption] {
    [Options().mtl, Options().mtlLR, Options().dwaTemperature, Options().gradnormAlpha, Options().cagradC, Options().gradvacBeta]
  }
}

extension RandomPurpose {
  /// Random choices of multi-task balancing (RLW's weights, GradDrop's masks, PCGrad's and
  /// GradVac's task orders), keyed by the step, never by the rank.
  public static let taskBalancing = RandomPurpose(rawValue: 170)
}

/// What a balancing method sees at one step: the per-task gradients of the shared parameters
/// **summed over all ranks** (the global batch's), each task's loss term, and the step.
public struct BalancingInput {
  public let tasks: Int
  /// Shared parameters (floats per task gradient).
  public let count: Int
  /// [tasks, count]
  public let gradients: UnsafePointer<Float>
  /// Each task's term of the objective over the global batch (what its gradient is of).
  public let losses: [Float]
  /// The optimizer step, 1-based.
  public let step: Int
  public let epoch: Int
  public let seed: UInt64

  public init(
    tasks: Int, count: Int, gradients: UnsafePointer<Float>, losses: [Float], step: Int, epoch: Int, seed: UInt64
  ) {
    precondition(losses.count == tasks, "one loss per task")
    self.tasks = tasks
    self.count = count
    self.gradients = gradients
    self.losses = losses
    self.step = step
    self.epoch = epoch
    self.seed = seed
  }

  /// Task t's gradient, [count].
  public func task(_ t: Int) -> UnsafePointer<Float> { gradients + t * count }

  /// The random stream `stream` of this step: the same on every rank (DESIGN invariant 6).
  public func random(_ stream: Int) -> KeyedRandom {
    KeyedRandom(seed: seed, epoch: step, sample: stream, purpose: .taskBalancing)
  }

  /// Gram matrix M[i][j] = gᵢ·gⱼ, in double precision.
  public func gram() -> [[Double]] {
    var m = Array(repeating: Array(repeating: 0.0, count: tasks), count: tasks)
    for i in 0..<tasks {
      for j in i..<tasks {
        let v = TaskAlgebra.dot(task(i), task(j), count)
        m[i][j] = v
        m[j][i] = v
      }
    }
    return m
  }

  /// direction = Σₜ weights[t]·gₜ.
  public func combine(_ weights: [Double], into direction: UnsafeMutablePointer<Float>) {
    direction.update(repeating: 0, count: count)
    for t in 0..<tasks {
      let w = Float(weights[t])
      let g = task(t)
      for i in 0..<count { direction[i] += w * g[i] }
    }
  }
}

/// A multi-task balancing method: from the global per-task gradients of the shared parameters
/// it writes the shared gradient the optimizer uses, and returns the weight of each task's
/// own (task-specific) parameters' gradients.
///
/// Called once per optimizer step on every rank with the same input, so a method's state
/// (learned weights, loss history, tracking variables) stays replicated without
/// communication; randomness comes from `input.random`, keyed by the step.
public protocol TaskBalancer: AnyObject {
  var kind: BalancerKind { get }
  /// Writes the shared gradient into `direction` ([input.count]) and returns the task
  /// weights for the task-specific parameters; may update the method's state.
  func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float]
  /// State beyond the arena (checkpointed in `method.safetensors`, names `mtl.*`).
  func stateEntries() -> [SafeTensors.Entry]
  /// Sets one tensor `stateEntries` named (shapes already checked).
  func restore(_ name: String, _ values: [Float]) throws
}

extension TaskBalancer {
  public func stateEntries() -> [SafeTensors.Entry] { [] }
  public func restore(_ name: String, _ values: [Float]) throws {}
}

/// A loss weighting: it chooses wₜ, and the shared gradient is Σₜ wₜ·gₜ (the gradient of
/// Σₜ wₜ·Lₜ), task t's own parameters' gradients times wₜ.
public protocol LossWeighting: TaskBalancer {
  /// This step's weights (may update learned state from the step's losses and gradients).
  func weights(_ input: BalancingInput) throws -> [Float]
}

extension LossWeighting {
  public var kind: BalancerKind { .lossWeighting }
  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let w = try weights(input)
    input.combine(w.map(Double.init), into: direction)
    return w
  }
}

/// The balancers by name.
public enum TaskBalancers {
  /// A fresh balancer of `name` for `tasks` tasks and `count` shared parameters, its settings
  /// from `config`.
  public static func make(_ name: BalancerName, tasks: Int, count: Int, config: PretrainConfig) -> any TaskBalancer {
    switch name {
    case .ew: EqualWeighting()
    case .uw: UncertaintyWeighting(tasks: tasks, learningRate: config.mtlLR)
    case .dwa: DynamicWeightAverage(tasks: tasks, temperature: config.dwaTemperature)
    case .rlw: RandomLossWeighting()
    case .gls: GeometricLossStrategy()
    case .gradnorm: GradNorm(tasks: tasks, alpha: config.gradnormAlpha, learningRate: config.mtlLR)
    case .pcgrad: PCGrad()
    case .mgda: MGDA()
    case .cagrad: CAGrad(c: config.cagradC)
    case .graddrop: GradDrop()
    case .imtl: IMTLG()
    case .gradvac: GradVac(tasks: tasks, beta: config.gradvacBeta)
    case .nashMTL: NashMTL(tasks: tasks)
    case .moco: MoCoMTL(tasks: tasks, count: count)
    case .alignedMTL: AlignedMTL()
    }
  }

  /// `--mtl` other than `ew` needs a multi-task method.
  static func validate(_ config: PretrainConfig) throws {
    guard config.mtl != .ew else { return }
    guard config.method.implementation is any MultiTaskMethod.Type else {
      throw ConfigError(
        message: "--mtl \(config.mtl) needs a multi-task method (--method mtslvr, or supervised: parallax mtl); \(config.method) has one task")
    }
    // The geometric mean of the losses is 0 when a task's term is 0.
    if config.mtl == .gls && config.predWeight == 0 {
      throw ConfigError(message: "--mtl gls needs every task's loss term positive: --pred-weight must be > 0")
    }
  }
}
