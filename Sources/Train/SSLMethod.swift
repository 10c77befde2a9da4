import Model

/// What a method needs from the data for every sample; the data side builds exactly that.
public enum MethodInputs: Sendable, Equatable {
  /// Two augmented views of each sample in one batch (rows 0..<B view 1, B..<2B view 2) and
  /// the multi-hot labels of the augmentations each row received.
  case twoViews
  /// The clean (un-augmented) input of each sample only: autoencoders.
  case clean
  /// One augmented view beside the clean input: denoising autoencoders (the view is the
  /// corrupted input, the clean image the target).
  case viewAndClean
  /// Two views beside the clean input: parallel denoising autoencoders.
  case twoViewsAndClean
  /// The clean input of each sample and its class in every label slot of the dataset:
  /// supervised multi-task learning. The classes arrive in `MethodBatch.transforms`,
  /// [B_local, slots], as Float (exact: class indices are far below 2²⁴).
  case labelled

  /// Augmented views per sample.
  public var viewCount: Int {
    switch self {
    case .twoViews, .twoViewsAndClean: 2
    case .viewAndClean: 1
    case .clean, .labelled: 0
    }
  }
  /// Whether the clean input follows the views.
  public var hasClean: Bool { self != .twoViews }
  /// Rows per sample in the batch.
  public var rowsPerSample: Int { viewCount + (hasClean ? 1 : 0) }
}

/// One local batch as a method receives it (the shape its `inputs` asked for).
public struct MethodBatch {
  /// [V·B_local, C, H, W]: rows 0..<B view 1 of the local samples, rows B..<2B view 2 (V = the
  /// inputs' `viewCount`; empty for `.clean`).
  public var views: Tensor
  /// [V·B_local, T] multi-hot labels of the augmentations applied to each view row, or nil
  /// when the data reports none; for `.labelled` inputs [B_local, slots] each sample's classes.
  public var transforms: UnsafePointer<Float>?
  /// [B_local, C, H, W] the clean inputs, when the method asked for them.
  public var clean: Tensor?

  public init(views: Tensor, transforms: UnsafePointer<Float>?, clean: Tensor? = nil) {
    self.views = views
    self.transforms = transforms
    self.clean = clean
  }
}

/// The losses of one forward, each task's by name, and the total the gradient is of.
/// All values are over the global batch, so the same on every rank.
public struct TaskLosses: Sendable {
  /// Per-task losses in the order the method names them (`ntxent`; `contrastive`,
  /// `predictive`), unweighted.
  public var tasks: [(name: String, value: Float)]
  /// The objective that was differentiated (for MT-SLVR `contrastive + w·predictive`).
  public var total: Float

  public init(tasks: [(name: String, value: Float)], total: Float) {
    self.tasks = tasks
    self.total = total
  }

  /// One task whose loss is the total.
  public init(_ name: String, _ value: Float) {
    self.init(tasks: [(name, value)], total: value)
  }

  public func value(_ name: String) -> Float? { tasks.first { $0.name == name }?.value }
}

/// A self-supervised objective on one parameter arena: a plug-in of the pretraining loop.
///
/// A method is one type in one file (its loss in `Model/` when new) and one case in `Method`,
/// the registry. It declares its options (static `Option`s in `Options`, listed in
/// `options`), the inputs it needs, how a batch goes forward and backward, what it does after
/// each optimizer step, and any state beyond the arena that a checkpoint must carry.
/// The same initialiser builds it for pretraining, evaluation and export, so their arenas
/// are identical (same names, same order).
public protocol SSLMethod: AnyObject {
  /// The method's own options (declared beside it; shown under its name in `--help`).
  static var options: [any AnyConfigOption] { get }
  /// What the data side builds for every sample.
  static var inputs: MethodInputs { get }
  /// Checks the configuration beyond single option values (after the run's own checks).
  static func validate(_ config: PretrainConfig) throws

  /// - Parameter collective: the world for global losses; `syncBN` decides whether BN uses it.
  init(config: PretrainConfig, collective: Collective) throws

  var arena: ParameterArena { get }
  /// The encoder whose features downstream tasks use.
  var encoder: any Encoder { get }
  /// Modules that report backward progress (their ranges cover the whole arena), so the
  /// gradient buckets can start while backward runs.
  var progressReporters: [ProgressHooks] { get }

  /// Forward, the losses over the *global* batch, and backward of `lossScale`·total into
  /// `arena.grads` (accumulating): this rank's share of the gradient of the global-mean loss
  /// (DESIGN.md invariant 3).
  /// - Parameter lossScale: 1/K for K accumulated micro-batches.
  /// - Returns: the named losses, the same on every rank (the caller stops on a non-finite
  ///   total before the optimizer touches the parameters).
  func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses

  /// Runs after the optimizer updated the parameters of step `step` (1-based): EMA targets,
  /// queues, loss-weight updates, per-step reports.
  func afterOptimizerStep(step: Int) throws

  /// State beyond the arena and the optimizer (EMA weights, a queue and its pointer, learned
  /// loss weights), saved as `method.safetensors` in checkpoints. Replicated: every rank must
  /// hold the same values.
  func stateEntries() -> [SafeTensors.Entry]
  /// Restores what `stateEntries` saved; `path` names the file in errors.
  func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws

  /// Counted forward FLOPs for an input of `shape` (benchmarks), or nil.
  func forwardFLOPs(_ shape: Shape) -> Int?
}

extension SSLMethod {
  public static var options: [any AnyConfigOption] { [] }
  public static var inputs: MethodInputs { .twoViews }
  public static func validate(_ config: PretrainConfig) throws {}
  public func afterOptimizerStep(step: Int) throws {}
  public func stateEntries() -> [SafeTensors.Entry] { [] }
  public func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws {
    try Self.restore(entries, into: stateEntries(), path: path, apply: { _, _ in })
  }

  /// Checks that `entries` holds exactly the tensors `expected` names, with their shapes, and
  /// hands each to `apply` (name, values) — the common body of `restoreState`.
  public static func restore(
    _ entries: [String: SafeTensors.Entry], into expected: [SafeTensors.Entry], path: String,
    apply: (String, [Float]) throws -> Void
  ) throws {
    for e in expected {
      guard let saved = entries[e.name] else {
        throw CheckpointError(path: path, reason: "has no method state '\(e.name)'")
      }
      guard saved.shape == e.shape, saved.values.count == e.values.count else {
        throw CheckpointError(
          path: path, reason: "method state '\(e.name)' has shape \(saved.shape), expected \(e.shape)")
      }
      try apply(e.name, saved.values)
    }
    let names = Set(expected.map(\.name))
    if let extra = entries.keys.sorted().first(where: { !names.contains($0) }) {
      throw CheckpointError(path: path, reason: "has method state '\(extra)' that this method does not keep")
    }
  }
}

/// A method of several tasks on shared parameters that can give each task's gradient of the
/// shared parameters separately, which gradient-combination methods (MGDA, PCGrad, CAGrad,
/// Nash-MTL, …) need. The shares are per rank; a caller sums them across ranks
/// (`TaskGradients.sum(over:)`) before anything combines them, so a combination sees the
/// gradients of the global batch whatever the rank count.
public protocol MultiTaskMethod: SSLMethod {
  /// The tasks, in the order of `forwardBackwardPerTask`'s gradients.
  var taskNames: [String] { get }
  /// The parameter ranges every task's loss reaches (their gradients are per task).
  var sharedRanges: [NamedRange] { get }
  /// Forward once, then backward of each task on its own. Task t's share of the gradient of
  /// its term of the total (weighted as in the total, times `lossScale`) over `sharedRanges`
  /// goes to `taskGradients.task(t)`; the task-specific parameters' gradients accumulate in
  /// `arena.grads` as `forwardBackward` would leave them; `arena.grads` over the shared
  /// ranges is left as it was. The sum over tasks of `taskGradients` is `forwardBackward`'s
  /// shared gradient.
  func forwardBackwardPerTask(_ batch: MethodBatch, lossScale: Float, into taskGradients: TaskGradients) throws
    -> TaskLosses
  /// The balancing the step runs instead of `forwardBackward` (`--mtl`; nil: the fused path).
  var balancing: TaskBalancing? { get }
}

/// Per-task gradients of a method's shared parameters: `tasks × sharedCount` floats, each
/// task's packed in `sharedRanges` order.
public final class TaskGradients {
  public let tasks: Int
  public let sharedCount: Int
  /// [tasks, sharedCount]
  public let values: Storage

  public init(tasks: Int, sharedRanges: [NamedRange]) {
    self.tasks = tasks
    sharedCount = sharedRanges.reduce(0) { $0 + $1.count }
    values = Storage(tasks * sharedCount)
  }

  /// Task t's gradient, [sharedCount].
  public func task(_ t: Int) -> UnsafeMutablePointer<Float> { values.data + t * sharedCount }

  /// Copies the arena's gradient over `ranges` into task t's row and zeroes it there.
  func take(_ t: Int, from arena: ParameterArena, ranges: [NamedRange]) {
    var o = task(t)
    for r in ranges {
      o.update(from: arena.grads + r.offset, count: r.count)
      (arena.grads + r.offset).update(repeating: 0, count: r.count)
      o += r.count
    }
  }

  /// Sums every task's shares across ranks, in place (one all-reduce; collective).
  public func sum(over collective: Collective) throws {
    try collective.allReduceSum(values.data, count: tasks * sharedCount)
  }
}

/// The registry of methods: one case per method, mapped to its type. Adding a method is its
/// file plus one case and one line here.
public enum Method: String, OptionChoice {
  case simclr
  case simsiam
  case transformPred = "transform-pred"
  case mtslvr
  case ae
  case dae
  case parallelAE = "parallel-ae"
  case parallelDAE = "parallel-dae"
  case barlow
  case byol
  case moco
  case supervised
  case amortised

  public var implementation: any SSLMethod.Type {
    switch self {
    case .simclr: SimCLRMethod.self
    case .simsiam: SimSiamMethod.self
    case .transformPred: TransformPredictionMethod.self
    case .mtslvr: MTSLVRMethod.self
    case .ae: AutoencoderMethod.self
    case .dae: DAEMethod.self
    case .parallelAE: ParallelAEMethod.self
    case .parallelDAE: ParallelDAEMethod.self
    case .barlow: BarlowTwinsMethod.self
    case .byol: BYOLMethod.self
    case .moco: MoCoMethod.self
    case .supervised: SupervisedMTLMethod.self
    case .amortised: AmortisedMethod.self
    }
  }
}

/// The one place a configuration becomes a method.
public enum Methods {
  public static func make(_ config: PretrainConfig, collective: Collective) throws -> SSLMethod {
    if config.method == .amortised && config.amortisedObjective == .moco {
      return try MoCoMethod(config: config, collective: collective)
    }
    return try config.method.implementation.init(config: config, collective: collective)
  }
}
