import Model

/// How MoCo's key encoder normalises its batch.
public enum KeyBatchNorm: String, OptionChoice {
  /// Global sync BN over all ranks' keys (W ranks ≡ 1).
  case sync
  /// MoCo's shuffling BN: the key batch is permuted across ranks (keyed by the step) and each
  /// rank normalises its share with its own statistics.
  case shuffle
}

extension Options {
  public var mocoMomentum: ConfigOption<Double> { ConfigOption(
    "mocoMomentum", default: 0.99,
    help: "MoCo: momentum m of the key encoder and head (key ← m·key + (1 − m)·query after every step).",
    check: { (0...1).contains($0) ? nil : "must be in [0, 1]" }) }
  public var mocoCosine: ConfigOption<Bool> { ConfigOption(
    "mocoCosine", default: false,
    help: "MoCo: raise the key momentum from moco-momentum to 1 over the run on BYOL's cosine schedule.") }
  public var queueSize: ConfigOption<Int> { ConfigOption(
    "queueSize", default: 4096, resume: .mustMatch,
    help: "MoCo: keys in the queue of negatives (at least the global batch, at most 65536).",
    check: { (1...65536).contains($0) ? nil : "must be in 1…65536" }) }
  public var keyBN: ConfigOption<KeyBatchNorm> { ConfigOption(
    "keyBN", default: .sync, resume: .mustMatch,
    help:
      "MoCo: the key encoder's BN: sync (global statistics over all ranks, keeps W ranks ≡ 1) or shuffle (the paper's shuffling BN: each step's keys are computed on a permutation of the global batch, keyed by the step, with per-rank statistics).") }
  public var mocoTemperature: ConfigOption<Float> { ConfigOption(
    "mocoTemperature", default: 0.2, help: "MoCo: InfoNCE temperature.",
    check: { $0 > 0 && $0.isFinite ? nil : "must be positive" }) }
}

/// MoCo-v2 (He et al. 2020; Chen et al. 2020): queries of view 1 from the query encoder and
/// a 2-layer MLP head (`Linear(d, d) → ReLU → Linear(d, projection-dim)`), keys of view 2 from
/// a momentum copy of both (`MomentumTarget`), InfoNCE against the positive key and a queue
/// of K earlier keys (`InfoNCEQueueLoss`).
///
/// Distributed: every rank's keys are all-gathered and enqueued in global-batch order (rank
/// r's rows are samples r·B…, the sampler's slices), so every rank holds the same queue after
/// every step. The key encoder's BN (`keyBN`): `sync`, global sync BN with `syncBN` (the
/// default), keeps W ranks ≡ 1; `shuffle` is the paper's shuffling BN: every rank gathers the
/// key views of the whole global batch, encodes the slice of a permutation keyed by (seed,
/// step, micro-batch) — the same permutation on every rank — with per-rank BN statistics, and
/// the keys are gathered and put back in global-batch order. (An all-gather of the inputs
/// stands in for the paper's all-to-all: W times the bytes, no new collective.)
///
/// With `--method amortised --amortised-objective moco` the query and key encoders are
/// `ConditionedConv4` (amortised invariance learning): each sample's invariance vector
/// conditions its query and its key, and the EMA carries the hypernetworks too.
///
/// Arena (trained, exported): `encoder.*`, `head.0`, `head.2`. Method state: `target.*` (the
/// key network), `queue` [K, D] (normalised keys), `queue_ptr` (the next row to write) and,
/// with `shuffle`, `key_step` (optimizer steps done, the permutation's key).
public final class MoCoMethod: SSLMethod, RunLengthAware {
  public static var options: [any AnyConfigOption] {
    [Options().mocoMomentum, Options().mocoCosine, Options().queueSize, Options().mocoTemperature, Options().keyBN]
  }

  public static func validate(_ config: PretrainConfig) throws {
    guard config.queueSize >= config.globalBatch else {
      throw ConfigError(
        message: "--queue-size \(config.queueSize) is smaller than --global-batch \(config.globalBatch): a step's keys would overwrite each other")
    }
  }

  public let arena = ParameterArena()
  public let encoder: any Encoder
  let head: MLPHead
  let key: MomentumTarget<(encoder: any Encoder, head: MLPHead)>
  let loss: InfoNCEQueueLoss
  let collective: Collective
  let baseMomentum: Double
  let cosine: Bool
  public var totalSteps = 0
  /// [K, D] normalised keys, the same on every rank.
  let queue: Storage
  public let queueCount: Int
  let dim: Int
  /// The next queue row to write.
  public private(set) var queuePointer = 0
  /// [N, D] the step's keys of all ranks.
  private let gathered = Storage()
  public private(set) var lastMomentum: Float = .nan
  let shuffle: Bool
  let seed: UInt64
  /// Optimizer steps done and micro-batches of the current step (the permutation's key).
  public private(set) var keyStep = 0
  private var micro = 0
  /// Shuffle mode: [N, C, H, W] every rank's key views, [B, C, H, W] this rank's shuffled
  /// share, [N, D] the keys in shuffled and in global order.
  private let allViews = Storage()
  private let shuffledViews = Storage()
  private let shuffledKeys = Storage()
  private let orderedKeys = Storage()

  public init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    baseMomentum = config.mocoMomentum
    cosine = config.mocoCosine
    shuffle = config.keyBN == .shuffle
    seed = config.seed
    let bnWorld = config.syncBN ? collective : nil
    let out = config.projectionDim
    let amortised = config.method == .amortised
    func build(_ a: ParameterArena, _ world: Collective?) throws -> (encoder: any Encoder, head: MLPHead) {
      let e: any Encoder =
        amortised
        ? AmortisedMethod.makeEncoder(config, arena: a, collective: world)
        : try SimCLRNetwork.makeEncoder(config: config, arena: a, collective: world)
      let d = e.featureDim
      let h = MLPHead(
        arena: a, prefix: "head", inFeatures: d,
        specs: [.init(d, norm: false, relu: true), .init(out, norm: false, relu: false)],
        makeNorm: SimCLRNetwork.norm(a, world))
      return (e, h)
    }
    let online = try build(arena, bnWorld)
    encoder = online.encoder
    head = online.head
    arena.allocate(seed: config.seed)
    // Shuffling BN normalises each rank's share of the permuted batch on its own.
    let keyWorld = config.keyBN == .shuffle ? nil : bnWorld
    key = try MomentumTarget(following: arena) { try build($0, keyWorld) }
    loss = InfoNCEQueueLoss(temperature: config.mocoTemperature, collective: collective)
    queueCount = config.queueSize
    dim = out
    // Random unit rows, from the seed alone: the same queue on every rank.
    queue = Storage(queueCount * dim)
    var rng = SplitMix64(seed: config.seed ^ 0x6D6F_636F_7175_6575)
    for i in 0..<queueCount * dim { queue.data[i] = rng.nextUnitFloat() * 2 - 1 }
    InfoNCEQueueLoss.normalize(queue.data, rows: queueCount, dim, into: queue.data, norms: nil)
    resetInvariance()
  }

  /// Outside training steps a conditioned encoder runs at v = 1 (every invariance), as
  /// `AmortisedMethod`'s.
  private func resetInvariance() {
    guard let conditioned else { return }
    let full = [Float](repeating: 1, count: conditioned.invarianceDim)
    conditioned.setInvariance(full)
    (key.network.encoder as? ConditionedConv4)?.setInvariance(full)
  }

  public var progressReporters: [ProgressHooks] { [head, encoder as? ProgressHooks].compactMap { $0 } }

  /// The conditioned query encoder of `--method amortised --amortised-objective moco` (nil:
  /// plain MoCo-v2).
  var conditioned: ConditionedConv4? { encoder as? ConditionedConv4 }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let v = batch.views.shape
    let b = v.n / 2
    let one = Shape(b, v.c, v.h, v.w)
    if let conditioned {
      // Rows 0..<B of the invariance vectors go with the queries (view 1), B..<2B with the
      // keys (view 2: the same vectors, one per sample); every rank's own samples (sync BN).
      guard let t = batch.transforms else {
        throw TrainError("amortised moco: the batch carries no invariance vectors (augment sampling is not amortised)")
      }
      let k = conditioned.invarianceDim
      conditioned.setInvariance(t, rows: b)
      (key.network.encoder as? ConditionedConv4)?.setInvariance(t + b * k, rows: b)
    }
    defer { resetInvariance() }
    let h = try encoder.forward(Tensor(batch.views.data, one), training: true)
    let q = try head.forward(h.reshaped(Shape(b, h.shape.perSample)), training: true)
    let k = try keys(Tensor(batch.views.data + one.count, one))
    let value = try loss.forward(q: q, k: k, queue: queue.data, queueCount: queueCount)
    let dq = try loss.backward()
    scaleInPlace(dq, lossScale)
    let dh = try head.backward(dq)
    _ = try encoder.backward(dh.reshaped(h.shape))
    try enqueue(loss.normalizedKeys)
    micro += 1
    return TaskLosses("infonce", value)
  }

  /// The keys [B, D] of this rank's key views `x` [B, C, H, W]: the key network on `x`
  /// (`sync`), or on this rank's slice of the permuted global batch, put back in order
  /// (`shuffle`; collective).
  func keys(_ x: Tensor) throws -> Tensor {
    let b = x.shape.n
    guard shuffle else {
      let hk = try key.network.encoder.forward(x, training: true)
      return try key.network.head.forward(hk.reshaped(Shape(b, hk.shape.perSample)), training: true)
    }
    let W = collective.size
    let r = collective.rank
    let n = b * W
    let per = x.shape.perSample
    let all = allViews.ensure(n * per)
    try collective.allGather(x.data, count: b * per, into: all)
    let perm = Self.keyPermutation(count: n, seed: seed, step: keyStep, micro: micro)
    try checkSamePermutation(perm)
    let mine = shuffledViews.tensor(x.shape)
    for i in 0..<b { (mine.data + i * per).update(from: all + perm[r * b + i] * per, count: per) }
    let hk = try key.network.encoder.forward(mine, training: true)
    let k = try key.network.head.forward(hk.reshaped(Shape(b, hk.shape.perSample)), training: true)
    let d = k.shape.perSample
    let gathered = shuffledKeys.ensure(n * d)
    try collective.allGather(k.data, count: b * d, into: gathered)
    let ordered = orderedKeys.ensure(n * d)
    for j in 0..<n { (ordered + perm[j] * d).update(from: gathered + j * d, count: d) }
    return Tensor(ordered + r * b * d, Shape(b, d))
  }

  /// Throws unless every rank holds the same permutation: one all-gather of a checksum that
  /// is exact in Float (a polynomial hash modulo a prime below 2²³). A rank that shuffled
  /// differently would pair queries with other samples' keys while the queues still agree.
  func checkSamePermutation(_ perm: [Int]) throws {
    let prime = 8_388_593
    var h = 0
    for (j, p) in perm.enumerated() { h = (h * 31 + p * (j + 1)) % prime }
    var mine = Float(h)
    var sums = [Float](repeating: 0, count: collective.size)
    try sums.withUnsafeMutableBufferPointer { out in
      try withUnsafePointer(to: &mine) { try collective.allGather($0, count: 1, into: out.baseAddress!) }
    }
    if let r = sums.firstIndex(where: { $0 != mine }) {
      throw TrainError(
        "--key-bn shuffle: rank \(r) permuted the key batch of step \(keyStep + 1) differently from rank \(collective.rank)")
    }
  }

  /// The permutation of the global batch for the key encoder's shuffling BN at (step,
  /// micro-batch): position j of the shuffled batch holds global sample `perm[j]`. A function
  /// of the seed and the step only, so every rank computes the same one (Fisher–Yates).
  public static func keyPermutation(count: Int, seed: UInt64, step: Int, micro: Int) -> [Int] {
    let key = (seed ^ 0x6B65_7973_6875_6666) &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(micro) &* 0xD1B5_4A32_D192_ED03
    var rng = SplitMix64(seed: key)
    var perm = Array(0..<count)
    if count > 1 {
      for i in stride(from: count - 1, to: 0, by: -1) { perm.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    }
    return perm
  }

  /// All-gathers every rank's normalised keys (rank order = global-batch order) and writes
  /// them into the queue from the pointer on, wrapping around (collective).
  func enqueue(_ keys: Tensor) throws {
    let n = keys.shape.n * collective.size
    let all = gathered.ensure(n * dim)
    try collective.allGather(keys.data, count: keys.count, into: all)
    for i in 0..<n {
      (queue.data + ((queuePointer + i) % queueCount) * dim).update(from: all + i * dim, count: dim)
    }
    queuePointer = (queuePointer + n) % queueCount
  }

  /// The key network moves toward the query network.
  public func afterOptimizerStep(step: Int) throws {
    lastMomentum = cosine ? cosineMomentum(base: baseMomentum, step: step - 1, total: totalSteps) : Float(baseMomentum)
    key.update(momentum: lastMomentum)
    keyStep = step
    micro = 0
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    key.stateEntries() + [
      SafeTensors.Entry(
        name: "queue", shape: [queueCount, dim], values: Array(UnsafeBufferPointer(start: queue.data, count: queueCount * dim))),
      SafeTensors.Entry(name: "queue_ptr", shape: [1], values: [Float(queuePointer)]),
    ] + (shuffle ? [SafeTensors.Entry(name: "key_step", shape: [1], values: [Float(keyStep)])] : [])
  }

  public func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws {
    try Self.restore(entries, into: stateEntries(), path: path) { name, values in
      switch name {
      case "queue":
        values.withUnsafeBufferPointer { queue.data.update(from: $0.baseAddress!, count: queueCount * dim) }
      case "queue_ptr":
        guard let p = values.first, p >= 0, p < Float(queueCount), p == p.rounded() else {
          throw CheckpointError(path: path, reason: "method state 'queue_ptr' is \(values.first ?? .nan), not a row of the queue of \(queueCount)")
        }
        queuePointer = Int(p)
      case "key_step":
        guard let s = values.first, s >= 0, s == s.rounded() else {
          throw CheckpointError(path: path, reason: "method state 'key_step' is \(values.first ?? .nan), not a step")
        }
        keyStep = Int(s)
        micro = 0
      default:
        guard key.restore(name: name, values: values) else {
          throw CheckpointError(path: path, reason: "method state '\(name)' does not fit the key network")
        }
      }
    }
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = encoder as? FLOPCounting else { return nil }
    let half = Shape(shape.n / 2, shape.c, shape.h, shape.w)
    let (fe, h) = enc.forwardFLOPs(half)
    let (fh, _) = head.forwardFLOPs(Shape(h.n, h.perSample))
    return 2 * (fe + fh) + 2 * half.n * queueCount * dim
  }
}
