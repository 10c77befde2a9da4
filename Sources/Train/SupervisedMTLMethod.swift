import Data
import Foundation
import Model

/// Where MGDA finds its min-norm combination (`--mgda-on`).
public enum MGDATarget: String, OptionChoice {
  /// The task gradients of the shared parameters (one encoder backward per task).
  case parameters
  /// MGDA-UB (Sener & Koltun 2018, §3.3): the task gradients of the shared representation
  /// (the encoder's output), one encoder backward of the combination.
  case representation
}

extension Options {
  public var tasks: ConfigOption<String> { ConfigOption(
    "tasks", default: "",
    help: "Supervised multi-task: the label slots trained as tasks, comma-separated (multi-fashion: left,right; spoken digits: word,language,voice,gender); empty: every slot. One slot trains a single-task baseline.") }
  public var mgdaOn: ConfigOption<MGDATarget> { ConfigOption(
    "mgdaOn", default: .parameters, resume: .mustMatch,
    help: "With --mtl mgda: the min-norm weights from the shared parameters' task gradients, or (representation) MGDA-UB's upper bound from the task gradients of the encoder output (one encoder backward; needs accumulate 1).") }
  public var taskSpecific: ConfigOption<String> { ConfigOption(
    "taskSpecific", default: "", resume: .mustMatch,
    help: "Supervised, conv4: Recon's branched encoder — these conv4 layers (encoder.0, .1, .4, .5, .8, .9, .12, .13; comma-separated) become one copy per task, and every norm after the first of them too; empty: the encoder is shared. parallax mtl --recon-search picks them.") }
  public var conflictScores: ConfigOption<Bool> { ConfigOption(
    "conflictScores", default: false, resume: .mustMatch,
    help: "Supervised: count Recon's S-conflicts of every shared layer each step (task pairs whose gradients of the layer, summed over the ranks, have a cosine below --recon-threshold); parallax mtl writes them to RUN_DIR/conflicts.json. Runs the per-task backward, also with --mtl ew.") }
  public var reconThreshold: ConfigOption<Float> { ConfigOption(
    "reconThreshold", default: 0,
    help: "Recon's S: a task pair conflicts on a layer when the cosine of their gradients of it is below S.",
    check: { (-1...1).contains($0) ? nil : "must be in [-1, 1]" }) }
}

/// Supervised multi-task learning: a shared encoder (`--model`, conv4 by default) and one
/// linear head per task, softmax cross-entropy per task over the global batch:
///
///     L = Σₜ Lₜ,   Lₜ = (1/N) Σᵢ CE(headₜ(encoder(xᵢ)), yᵢₜ)
///
/// Tasks are label slots of the dataset (`--tasks`; MultiFashion's left and right item, the
/// spoken digits' word, language, voice and gender). `--mtl` balances them through the
/// pretraining step's `TaskBalancing` (per-task gradients of the encoder summed over the
/// ranks, then combined), so every balancing method runs under `mpirun` as it does for
/// MT-SLVR. `--mtl mgda --mgda-on representation` is MGDA-UB: the min-norm weights of the
/// task gradients of the encoder output Z (the T×T Gram matrix of ∂Lₜ/∂Z over the global
/// batch, summed over the ranks), then one encoder backward of Σₜ αₜ ∂Lₜ/∂Z and every head's
/// gradient times its αₜ (the gradient of Σₜ αₜLₜ, as Sener & Koltun's code steps).
///
/// **Recon** (Shi et al., ICLR 2023) is two options: `--conflict-scores` counts, per shared
/// layer, the task pairs whose gradients of it point apart (`LayerConflicts`), and
/// `--task-specific` trains the branched conv4 (`MultiTaskEncoder.branchedConv4`) where the
/// chosen layers are one copy per task. Head t then reads task t's features (columns
/// t·d ..< (t+1)·d of the encoder output), and the task copies are task t's own parameters
/// for the balancing (scaled by wₜ like its head). `parallax mtl --recon-search` runs both.
///
/// Arena: `encoder.*`, then `head.<task>.weight` [classes, d] and `.bias` per task.
public final class SupervisedMTLMethod: MultiTaskMethod {
  public static var inputs: MethodInputs { .labelled }
  public static var options: [any AnyConfigOption] {
    [Options().tasks, Options().mgdaOn, Options().taskSpecific, Options().conflictScores, Options().reconThreshold]
      + Options.balancing
  }

  /// The layers of `--task-specific`, in the order given.
  public static func taskSpecificLayers(_ config: PretrainConfig) -> [String] {
    config.taskSpecific.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
  }

  public static func validate(_ config: PretrainConfig) throws {
    let layers = taskSpecificLayers(config)
    if !layers.isEmpty {
      guard config.model == .conv4 else {
        throw ConfigError(message: "--task-specific: the branched encoder is conv4's (got --model \(config.model))")
      }
      let known = MultiTaskEncoder.conv4LayerNames(prefix: "encoder")
      if let bad = layers.first(where: { !known.contains($0) }) {
        throw ConfigError(message: "--task-specific: '\(bad)' is not a conv4 layer (layers: \(known.joined(separator: ", ")))")
      }
      guard config.mgdaOn == .parameters else {
        throw ConfigError(message: "--task-specific: MGDA-UB (--mgda-on representation) needs one shared representation")
      }
    }
    if config.conflictScores && config.mgdaOn == .representation {
      throw ConfigError(message: "--conflict-scores needs the parameters' task gradients, not MGDA-UB's (--mgda-on representation)")
    }
    if config.mgdaOn == .representation {
      guard config.mtl == .mgda else {
        throw ConfigError(message: "--mgda-on representation is MGDA-UB: it needs --mtl mgda (got --mtl \(config.mtl))")
      }
      guard config.accumulate == 1 else {
        throw ConfigError(
          message: "--mgda-on representation solves on each batch's representation: it needs --accumulate 1 (got \(config.accumulate))")
      }
    }
  }

  public let arena: ParameterArena
  public let encoder: any Encoder
  /// The tasks: label slot names and each one's slot index in the data.
  public let taskNames: [String]
  public let slots: [Int]
  public let classCounts: [Int]
  /// Label columns per sample in a batch: every slot of the data, in its order.
  let slotCount: Int
  let heads: [Linear]
  /// Features a head reads: the encoder's, or (branched) one task's.
  let headDim: Int
  /// Recon's branched encoder: head t reads columns t·headDim ..< (t+1)·headDim.
  public let branched: Bool
  /// `--conflict-scores`: Recon's per-layer counts, recorded every step.
  public private(set) var conflicts: LayerConflicts?
  /// Branched: each head's input (Linear keeps it for backward).
  private let headInputs: [Storage]
  let collective: Collective
  /// When the per-step line prints (`--log-every`, `--log-interval`).
  var lines: MethodLineCadence
  /// MGDA-UB on the representation instead of the parameters' balancing.
  let representationMGDA: Bool
  public private(set) var balancing: TaskBalancing?
  /// The last step's task weights (MGDA-UB) and losses, for the log.
  private var lastWeights: [Float] = []
  private var lastLosses: [Float] = []
  /// [B, d] the summed (or weighted) gradient of the encoder output.
  private let dh = Storage()
  private let dlogits = Storage()
  private var labels: [Int] = []

  public init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    lines = MethodLineCadence(config: config)
    let available = try Datasets.open(config).labelSlots
    let names =
      config.tasks.isEmpty
      ? available.map(\.name)
      : config.tasks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    var slots: [Int] = []
    for n in names {
      guard let s = available.firstIndex(where: { $0.name == n }) else {
        throw ConfigError(
          message: "--tasks: '\(n)' is not a label slot of data \(config.data.rawValue) (slots: \(available.map(\.name).joined(separator: ", ")))")
      }
      guard !slots.contains(s) else { throw ConfigError(message: "--tasks: '\(n)' is named twice") }
      slots.append(s)
    }
    guard !slots.isEmpty else { throw ConfigError(message: "--tasks: no task given") }
    if config.mtl != .ew && slots.count < 2 {
      throw ConfigError(message: "--mtl \(config.mtl) balances several tasks; --tasks \(config.tasks) names one (use --mtl ew)")
    }
    taskNames = names
    self.slots = slots
    slotCount = available.count
    let counts = slots.map { available[$0].classCount }
    classCounts = counts
    let arena = ParameterArena()
    self.arena = arena
    let specific = Self.taskSpecificLayers(config)
    branched = !specific.isEmpty
    if branched {
      guard names.count >= 2 else {
        throw ConfigError(message: "--task-specific branches the encoder per task; --tasks \(config.tasks) names one")
      }
      let s = config.sampleShape
      encoder = try MultiTaskEncoder.branchedConv4(
        arena: arena, prefix: "encoder", inChannels: s.c, width: config.conv4Width, inputSize: s.h, inputWidth: s.w, tasks: names.count,
        taskSpecific: Set(specific), makeNorm: SimCLRNetwork.norm(arena, config.syncBN ? collective : nil))
    } else {
      encoder = try SimCLRNetwork.makeEncoder(config: config, arena: arena, collective: config.syncBN ? collective : nil)
    }
    let d = branched ? encoder.featureDim / names.count : encoder.featureDim
    headDim = d
    headInputs = branched ? names.map { _ in Storage() } : []
    heads = zip(names, counts).map { name, k in
      Linear(arena: arena, name: "head.\(name)", inFeatures: d, outFeatures: k)
    }
    arena.allocate(seed: config.seed)
    representationMGDA = config.mtl == .mgda && config.mgdaOn == .representation
    if (config.mtl != .ew || config.conflictScores) && !representationMGDA {
      let b = TaskBalancing(
        name: config.mtl, shared: sharedRanges, taskRanges: taskRanges,
        termWeights: Array(repeating: 1, count: names.count), config: config)
      if config.conflictScores {
        let c = LayerConflicts(shared: sharedRanges, tasks: names.count, threshold: Double(config.reconThreshold))
        conflicts = c
        b.observe = { c.record($0) }
      }
      balancing = b
    }
  }

  public var progressReporters: [ProgressHooks] { [encoder as? ProgressHooks].compactMap { $0 } }

  /// The encoder's parameters every task's loss reaches (all but the branches' `.task{t}`
  /// copies).
  public var sharedRanges: [NamedRange] {
    arena.parameterRanges.filter { $0.name.hasPrefix("encoder.") && !$0.name.contains(".task") }
  }

  /// Task t's head and (branched) its encoder copies.
  public var taskRanges: [[NamedRange]] {
    taskNames.indices.map { t in
      arena.parameterRanges.filter {
        $0.name.hasPrefix("head.\(taskNames[t]).") || ($0.name.hasPrefix("encoder.") && $0.name.contains(".task\(t)."))
      }
    }
  }

  /// What head t reads from the encoder output `[n, featureDim]`.
  func headInput(_ flat: Tensor, task t: Int) -> Tensor {
    guard branched else { return flat }
    let n = flat.shape.n
    let d = headDim
    let y = headInputs[t].tensor(Shape(n, d))
    for i in 0..<n { (y.data + i * d).update(from: flat.data + i * encoder.featureDim + t * d, count: d) }
    return y
  }

  /// The encoder output's gradient `[n, featureDim]` from the heads' input gradients:
  /// Σₜ wₜ·dOut[t] (shared features), or task t's columns wₜ·dOut[t] (branched); `only`:
  /// task `only`'s part alone.
  func encoderGradient(_ dOut: [Tensor], weights: [Float], only: Int? = nil, into g: Tensor) {
    let n = g.shape.n
    let d = headDim
    g.data.update(repeating: 0, count: g.count)
    for t in taskNames.indices where only == nil || only == t {
      let w = weights[t]
      let src = dOut[t].data
      if branched {
        let f = encoder.featureDim
        for i in 0..<n {
          let row = g.data + i * f + t * d
          for j in 0..<d { row[j] = w * src[i * d + j] }
        }
      } else {
        for i in 0..<n * d { g.data[i] += w * src[i] }
      }
    }
  }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    try run(batch, lossScale: lossScale, perTask: nil)
  }

  public func forwardBackwardPerTask(_ batch: MethodBatch, lossScale: Float, into taskGradients: TaskGradients)
    throws -> TaskLosses
  {
    try run(batch, lossScale: lossScale, perTask: taskGradients)
  }

  /// Forward of the encoder and every head, each task's cross-entropy over the global batch,
  /// and backward: the heads, then one encoder backward of the summed (MGDA-UB: weighted)
  /// output gradient, or (`perTask`) one encoder backward per task with the shared gradient
  /// taken out after each.
  private func run(_ batch: MethodBatch, lossScale: Float, perTask: TaskGradients?) throws -> TaskLosses {
    guard let x = batch.clean, let columns = batch.transforms else {
      throw ConfigError(message: "supervised: the data gave no labelled inputs")
    }
    let h = try encoder.forward(x, training: true)
    let n = h.shape.n
    let d = encoder.featureDim
    let flat = h.reshaped(Shape(n, d))
    let ones = [Float](repeating: 1, count: taskNames.count)
    // Each rank's rows are 1/W of the global batch: the share of the gradient of the global
    // mean is (1/N)(p − y), N = n·W, and the loss is the sum of the ranks' sums over N.
    let globalRows = Float(n * collective.size)
    var sums = [Float](repeating: 0, count: taskNames.count)
    var dOut: [Tensor] = []
    labels = [Int](repeating: 0, count: n)
    for (t, head) in heads.enumerated() {
      let k = classCounts[t]
      for i in 0..<n { labels[i] = Int(columns[i * slotCount + slots[t]]) }
      let logits = try head.forward(headInput(flat, task: t), training: true)
      let g = dlogits.tensor(Shape(n, k))
      let mean = try labels.withUnsafeBufferPointer { try softmaxCrossEntropy(g.data, logits.data, $0.baseAddress!, n, k) }
      sums[t] = mean * Float(n)
      // softmaxCrossEntropy divides by the local n.
      scaleInPlace(g, Float(n) / globalRows * lossScale)
      dOut.append(try head.backward(g))
    }
    if collective.size > 1 {
      try sums.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: $0.count) }
    }
    let losses = sums.map { $0 / globalRows }
    lastLosses = losses
    let g = dh.tensor(Shape(n, d))
    if let perTask {
      let shared = sharedRanges
      // Keep what the shared gradients held before (accumulation), restore it afterwards.
      let before = shared.map { arena.gradient(of: $0) }
      for r in shared { (arena.grads + r.offset).update(repeating: 0, count: r.count) }
      for t in taskNames.indices.reversed() {
        encoderGradient(dOut, weights: ones, only: t, into: g)
        _ = try encoder.backward(g.reshaped(h.shape))
        perTask.take(t, from: arena, ranges: shared)
      }
      for (r, v) in zip(shared, before) {
        v.withUnsafeBufferPointer { (arena.grads + r.offset).update(from: $0.baseAddress!, count: r.count) }
      }
    } else {
      var weights = ones
      if representationMGDA {
        weights = try representationWeights(dOut, rows: n, dim: d)
        // The heads' gradients of this batch are all the arena holds (accumulate 1).
        for (t, ranges) in taskRanges.enumerated() {
          for r in ranges {
            let p = arena.grads + r.offset
            for i in 0..<r.count { p[i] *= weights[t] }
          }
        }
        lastWeights = weights
      }
      encoderGradient(dOut, weights: weights, into: g)
      _ = try encoder.backward(g.reshaped(h.shape))
    }
    let total = representationMGDA ? zip(losses, lastWeights).reduce(0) { $0 + $1.0 * $1.1 } : losses.reduce(0, +)
    return TaskLosses(tasks: Array(zip(taskNames, losses)), total: total)
  }

  /// MGDA-UB's weights: the min-norm point of the convex hull of the task gradients of the
  /// encoder output over the global batch. Their Gram matrix is a sum over rows, so each
  /// rank adds its rows' products and one all-reduce of T² values gives the global one.
  func representationWeights(_ grads: [Tensor], rows n: Int, dim d: Int) throws -> [Float] {
    let t = grads.count
    var gram = [Double](repeating: 0, count: t * t)
    for i in 0..<t {
      for j in i..<t {
        let v = TaskAlgebra.dot(grads[i].data, grads[j].data, n * d)
        gram[i * t + j] = v
        gram[j * t + i] = v
      }
    }
    if collective.size > 1 {
      try gram.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: $0.count) }
    }
    let m = (0..<t).map { i in Array(gram[i * t..<(i + 1) * t]) }
    let alpha = TaskAlgebra.minNormWeights(m)
    guard alpha.allSatisfy(\.isFinite) else {
      throw TrainError("--mtl mgda --mgda-on representation: min-norm weights \(alpha) are not finite")
    }
    return alpha.map(Float.init)
  }

  public func afterOptimizerStep(step: Int) throws {
    guard lines.due(step: step) else { return }
    var line = "supervised step \(step): " + zip(taskNames, lastLosses).map { String(format: "%@ %.4f", $0, $1) }.joined(separator: " · ")
    if let b = balancing {
      line += " · \(b.name) weights " + b.lastWeights.map { String(format: "%.4f", $0) }.joined(separator: "/")
    } else if representationMGDA {
      line += " · mgda-ub weights " + lastWeights.map { String(format: "%.4f", $0) }.joined(separator: "/")
    }
    rankZeroPrint(collective, line)
  }

  public func stateEntries() -> [SafeTensors.Entry] { balancing?.stateEntries() ?? [] }

  public func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws {
    try Self.restore(entries, into: stateEntries(), path: path) { name, values in
      try balancing?.balancer.restore(name, values)
    }
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = encoder as? FLOPCounting else { return nil }
    let (fe, _) = enc.forwardFLOPs(shape)
    return fe + shape.n * classCounts.reduce(0) { $0 + 2 * headDim * $1 }
  }

  // MARK: Evaluation

  /// Test accuracy of every task on `source` (clean inputs, BN in inference mode): each rank
  /// scores a contiguous part of the samples and the correct counts are summed (collective).
  /// - Returns: the fraction correct per task, in `taskNames` order.
  public func accuracy(on source: EvalSource, batch: Int = 256) throws -> [Double] {
    let range = DistributedSampler.evaluationRange(count: source.count, rank: collective.rank, worldSize: collective.size)
    let s = source.inputShape
    let x = Storage(batch * s.count)
    var correct = [Double](repeating: 0, count: taskNames.count)
    var start = range.lowerBound
    while start < range.upperBound {
      let end = min(start + batch, range.upperBound)
      let m = end - start
      try source.load(indices: start..<end, into: x.data)
      let h = try encoder.forward(Tensor(x.data, Shape(m, s.channels, s.height, s.width)), training: false)
      let flat = h.reshaped(Shape(m, encoder.featureDim))
      for (t, head) in heads.enumerated() {
        let logits = try head.forward(headInput(flat, task: t), training: false)
        let k = classCounts[t]
        for i in 0..<m {
          let row = logits.data + i * k
          var best = 0
          for j in 1..<k where row[j] > row[best] { best = j }
          if best == source.label(start + i, slot: slots[t]) { correct[t] += 1 }
        }
      }
      start = end
    }
    if collective.size > 1 {
      try correct.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: $0.count) }
    }
    return correct.map { $0 / Double(source.count) }
  }
}
