import Foundation
import Model

/// The contrastive branch of MT-SLVR.
public enum ContrastiveBranch: String, OptionChoice {
  case simclr, simsiam
}

extension Options {
  public var predWeight: ConfigOption<Float> { ConfigOption(
    "predWeight", default: 1, help: "MT-SLVR: weight w of the predictive loss (total = contrastive + w·predictive).",
    check: finiteNonNegative) }
  public var adapter: ConfigOption<AdapterMode> { ConfigOption(
    "adapter", default: .parallel, resume: .mustMatch,
    help: "MT-SLVR adapters: none, bn (task-specific BN), series or parallel (residual adapters).") }
  public var contrastive: ConfigOption<ContrastiveBranch> { ConfigOption(
    "contrastive", default: .simclr, resume: .mustMatch, help: "MT-SLVR's contrastive branch.") }
}

/// MT-SLVR (Heggan et al., InterSpeech 2023): one backbone learns augmentation-invariant
/// features (a contrastive task, SimCLR or SimSiam) and augmentation-equivariant ones
/// (predicting the multi-hot vector of augmentations applied) at once:
///
///     L = L_contrastive + w · L_predictive
///
/// Both views go through both branches. With adapters `bn`, `series` or `parallel` the encoder
/// is a `MultiTaskEncoder`: first stage shared, later stages adapted per task, task-specific
/// final BN; task 0 feeds the contrastive branch, task 1 the predictive one, and `encoder`
/// outputs their concatenation for downstream use. With `none` both branches share every
/// encoder parameter (and with w = 0 the update is the contrastive method's).
///
/// Arena: `encoder.*`, the contrastive branch (`head.*` or `projector.*`/`predictor.*`), then
/// `transform_head.*`; backward runs in the reverse order, so progress reports stay valid.
public final class MTSLVRMethod: MultiTaskMethod {
  public static var options: [any AnyConfigOption] {
    [Options().predWeight, Options().adapter, Options().contrastive, Options().temperature, Options().predictorDim]
      + Options.balancing
  }
  public let arena: ParameterArena
  public let encoder: any Encoder
  public let adapter: AdapterMode
  public let predWeight: Float
  let contrastive: MethodBranch
  let predictive: TransformPredictionBranch
  /// 1 (`none`: both branches read the same features) or 2.
  let tasks: Int
  let taskDim: Int
  let collective: Collective
  /// When the per-step line prints (`--log-every`, `--log-interval`).
  var lines: MethodLineCadence
  /// The last forward's task losses.
  private var last: (contrastive: Float, predictive: Float) = (.nan, .nan)
  /// [2B, d] each task's features, [2B, T·d] their gradients (T = 2).
  private let hc = Storage()
  private let hp = Storage()
  private let dh = Storage()
  /// The multi-task balancing of `--mtl` (nil for `ew`: the fused backward).
  public private(set) var balancing: TaskBalancing?
  /// Set once the parameter summary has been printed (this process).
  nonisolated(unsafe) private static var announced = false

  public init(config: PretrainConfig, collective: Collective) throws {
    let mode = config.adapter
    adapter = mode
    predWeight = config.predWeight
    self.collective = collective
    lines = MethodLineCadence(config: config)
    arena = ParameterArena()
    let bnWorld = config.syncBN ? collective : nil
    if mode == .none {
      encoder = try SimCLRNetwork.makeEncoder(config: config, arena: arena, collective: bnWorld)
      tasks = 1
      taskDim = encoder.featureDim
    } else {
      let norm = SimCLRNetwork.norm(arena, bnWorld)
      let enc: MultiTaskEncoder
      switch config.model {
      case .conv4:
        let input = config.sampleShape
        enc = MultiTaskEncoder.conv4(
          arena: arena, prefix: "encoder", inChannels: input.c, width: config.conv4Width, inputSize: input.h,
          inputWidth: input.w, mode: mode,
          makeNorm: norm)
      case .resnet18:
        let input = config.sampleShape
        enc = MultiTaskEncoder.resnet18(
          arena: arena, prefix: "encoder", inChannels: input.c, inputSize: input.h, inputWidth: input.w,
          mode: mode, makeNorm: norm)
      case .conv6:
        throw ConfigError(message: "mtslvr: adapter \(mode.rawValue) needs a BN encoder (conv4, resnet18, samplecnn), not conv6")
      case .samplecnn:
        enc = try MultiTaskEncoder.sampleCNN(
          arena: arena, prefix: "encoder", inputLength: config.sampleShape.w, mode: mode, makeNorm: norm)
      }
      enc.computesInputGradient = false
      encoder = enc
      tasks = enc.taskCount
      taskDim = enc.taskFeatureDim
    }
    switch config.contrastive {
    case .simclr:
      contrastive = SimCLRBranch(arena: arena, inFeatures: taskDim, config: config, collective: collective)
    case .simsiam:
      contrastive = SimSiamBranch(arena: arena, inFeatures: taskDim, config: config, collective: collective)
    }
    predictive = TransformPredictionBranch(
      arena: arena, inFeatures: taskDim, labelCount: config.transformLabelCount, config: config,
      collective: collective)
    arena.allocate(seed: config.seed)
    if config.mtl != .ew {
      balancing = TaskBalancing(
        name: config.mtl, shared: sharedRanges, taskRanges: taskRanges, termWeights: [1, predWeight], config: config)
    }
    if !Self.announced {
      Self.announced = true
      rankZeroPrint(collective, summary(config))
    }
  }

  /// Shared and per-task parameter counts (heads count for their task).
  public func parameterCounts() -> (shared: Int, contrastive: Int, predictive: Int) {
    let (shared, perTask) = MultiTaskEncoder.parameterCounts(arena, tasks: 2, prefix: "encoder")
    var c = perTask[0], p = perTask[1]
    for r in arena.parameterRanges where !r.name.hasPrefix("encoder.") {
      if r.name.hasPrefix("transform_head.") { p += r.count } else { c += r.count }
    }
    return (shared, c, p)
  }

  func summary(_ config: PretrainConfig) -> String {
    let (s, c, p) = parameterCounts()
    let (_, enc) = MultiTaskEncoder.parameterCounts(arena, tasks: 2, prefix: "encoder")
    return
      "mtslvr: \(config.model.rawValue) · adapter \(adapter.rawValue) · contrastive \(config.contrastive.rawValue) · pred-weight \(predWeight) · parameters: shared \(s), contrastive task \(c) (encoder \(enc[0]) + head \(c - enc[0])), predictive task \(p) (encoder \(enc[1]) + head \(p - enc[1])) · downstream features \(encoder.featureDim)"
  }

  public var progressReporters: [ProgressHooks] {
    predictive.reporters + contrastive.reporters + [encoder as? ProgressHooks].compactMap { $0 }
  }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    try run(batch, lossScale: lossScale, perTask: nil)
  }

  public var taskNames: [String] { ["contrastive", "predictive"] }

  /// The encoder's parameters that are not a task's (`.task{t}.`): all of them with adapters
  /// `none`, the shared convolutions and the first stage otherwise. The heads are per task.
  public var sharedRanges: [NamedRange] {
    arena.parameterRanges.filter { r in
      r.name.hasPrefix("encoder.") && !(0..<2).contains { r.name.contains(".task\($0).") }
    }
  }

  /// Each task's own parameters: task t's adapters and final BN (`.task{t}.`) and its head
  /// (the contrastive branch for task 0, `transform_head.*` for task 1).
  public var taskRanges: [[NamedRange]] {
    let shared = Set(sharedRanges.map(\.offset))
    let own = arena.parameterRanges.filter { !shared.contains($0.offset) }
    func isPredictive(_ r: NamedRange) -> Bool { r.name.hasPrefix("transform_head.") || r.name.contains(".task1.") }
    return [own.filter { !isPredictive($0) }, own.filter(isPredictive)]
  }

  public func forwardBackwardPerTask(_ batch: MethodBatch, lossScale: Float, into taskGradients: TaskGradients)
    throws -> TaskLosses
  {
    try run(batch, lossScale: lossScale, perTask: taskGradients)
  }

  /// Forward of both branches and backward: one backward of the summed feature gradient, or
  /// (`perTask`) one encoder backward per task, the shared parameters' gradient taken out
  /// after each (the encoder's saved forward values serve both backwards).
  private func run(_ batch: MethodBatch, lossScale: Float, perTask: TaskGradients?) throws -> TaskLosses {
    let h = try encoder.forward(batch.views, training: true)
    let n = h.shape.n
    let d = taskDim
    let flat = h.reshaped(Shape(n, h.shape.perSample))
    var inC = flat
    var inP = flat
    if tasks == 2 {
      inC = hc.tensor(Shape(n, d))
      inP = hp.tensor(Shape(n, d))
      for i in 0..<n {
        (inC.data + i * d).update(from: h.data + i * 2 * d, count: d)
        (inP.data + i * d).update(from: h.data + i * 2 * d + d, count: d)
      }
    }
    let lc = try contrastive.forward(inC, labels: nil)
    let lp = try predictive.forward(inP, labels: batch.transforms)
    // The predictive head is registered last, so its backward (and progress) comes first.
    let dP = try predictive.backward(scale: predWeight * lossScale)
    let dC = try contrastive.backward(scale: lossScale)
    let g = dh.tensor(Shape(n, tasks * d))
    /// Writes task features' gradients into g: `c`, `p` select which tasks contribute.
    func fill(c: Bool, p: Bool) {
      if tasks == 1 {
        for i in 0..<g.count { g.data[i] = (c ? dC.data[i] : 0) + (p ? dP.data[i] : 0) }
      } else {
        for i in 0..<n {
          let row = g.data + i * 2 * d
          if c { row.update(from: dC.data + i * d, count: d) } else { row.update(repeating: 0, count: d) }
          if p { (row + d).update(from: dP.data + i * d, count: d) } else { (row + d).update(repeating: 0, count: d) }
        }
      }
    }
    if let perTask {
      let shared = sharedRanges
      // Keep what the shared gradients held before (accumulation), restore it afterwards.
      let before = shared.map { arena.gradient(of: $0) }
      for r in shared { (arena.grads + r.offset).update(repeating: 0, count: r.count) }
      fill(c: false, p: true)
      _ = try encoder.backward(g.reshaped(h.shape))
      perTask.take(1, from: arena, ranges: shared)
      fill(c: true, p: false)
      _ = try encoder.backward(g.reshaped(h.shape))
      perTask.take(0, from: arena, ranges: shared)
      for (r, v) in zip(shared, before) { v.withUnsafeBufferPointer { (arena.grads + r.offset).update(from: $0.baseAddress!, count: r.count) } }
    } else {
      fill(c: true, p: true)
      _ = try encoder.backward(g.reshaped(h.shape))
    }
    last = (lc, lp)
    return TaskLosses(tasks: [("contrastive", lc), ("predictive", lp)], total: lc + predWeight * lp)
  }

  public func afterOptimizerStep(step: Int) throws {
    guard lines.due(step: step) else { return }
    rankZeroPrint(
      collective,
      String(
        format: "mtslvr step %d: contrastive %.4f · predictive %.4f · macro mAP %.4f (rank 0 rows)%@",
        step, last.contrastive, last.predictive, predictive.lastMacroAP,
        balancing.map { b in " · \(b.name) weights " + b.lastWeights.map { String(format: "%.4f", $0) }.joined(separator: "/") } ?? ""))
  }

  public func stateEntries() -> [SafeTensors.Entry] { balancing?.stateEntries() ?? [] }

  public func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws {
    try Self.restore(entries, into: stateEntries(), path: path) { name, values in
      try balancing?.balancer.restore(name, values)
    }
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard tasks == 1, let enc = encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    let s = Shape(h.n, h.perSample)
    return fe + contrastive.forwardFLOPs(s) + predictive.forwardFLOPs(s)
  }
}
