import Model

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
/// every step; the key encoder's BN is global sync BN with `syncBN` (the default), which keeps
/// W ranks ≡ 1. (The paper's shuffled BN across ranks is not implemented.)
///
/// Arena (trained, exported): `encoder.*`, `head.0`, `head.2`. Method state: `target.*` (the
/// key network), `queue` [K, D] (normalised keys) and `queue_ptr` (the next row to write).
public final class MoCoMethod: SSLMethod, RunLengthAware {
  public static var options: [any AnyConfigOption] {
    [Options().mocoMomentum, Options().mocoCosine, Options().queueSize, Options().mocoTemperature]
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

  public init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    baseMomentum = config.mocoMomentum
    cosine = config.mocoCosine
    let bnWorld = config.syncBN ? collective : nil
    let out = config.projectionDim
    func build(_ a: ParameterArena) throws -> (encoder: any Encoder, head: MLPHead) {
      let e = try SimCLRNetwork.makeEncoder(config.model, arena: a, prefix: "encoder", collective: bnWorld, input: config.sampleShape)
      let d = e.featureDim
      let h = MLPHead(
        arena: a, prefix: "head", inFeatures: d,
        specs: [.init(d, norm: false, relu: true), .init(out, norm: false, relu: false)],
        makeNorm: SimCLRNetwork.norm(a, bnWorld))
      return (e, h)
    }
    let online = try build(arena)
    encoder = online.encoder
    head = online.head
    arena.allocate(seed: config.seed)
    key = try MomentumTarget(following: arena, build: build)
    loss = InfoNCEQueueLoss(temperature: config.mocoTemperature, collective: collective)
    queueCount = config.queueSize
    dim = out
    // Random unit rows, from the seed alone: the same queue on every rank.
    queue = Storage(queueCount * dim)
    var rng = SplitMix64(seed: config.seed ^ 0x6D6F_636F_7175_6575)
    for i in 0..<queueCount * dim { queue.data[i] = rng.nextUnitFloat() * 2 - 1 }
    InfoNCEQueueLoss.normalize(queue.data, rows: queueCount, dim, into: queue.data, norms: nil)
  }

  public var progressReporters: [ProgressHooks] { [head, encoder as? ProgressHooks].compactMap { $0 } }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let v = batch.views.shape
    let b = v.n / 2
    let one = Shape(b, v.c, v.h, v.w)
    let h = try encoder.forward(Tensor(batch.views.data, one), training: true)
    let q = try head.forward(h.reshaped(Shape(b, h.shape.perSample)), training: true)
    let hk = try key.network.encoder.forward(Tensor(batch.views.data + one.count, one), training: true)
    let k = try key.network.head.forward(hk.reshaped(Shape(b, hk.shape.perSample)), training: true)
    let value = try loss.forward(q: q, k: k, queue: queue.data, queueCount: queueCount)
    let dq = try loss.backward()
    scaleInPlace(dq, lossScale)
    let dh = try head.backward(dq)
    _ = try encoder.backward(dh.reshaped(h.shape))
    try enqueue(loss.normalizedKeys)
    return TaskLosses("infonce", value)
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
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    key.stateEntries() + [
      SafeTensors.Entry(
        name: "queue", shape: [queueCount, dim], values: Array(UnsafeBufferPointer(start: queue.data, count: queueCount * dim))),
      SafeTensors.Entry(name: "queue_ptr", shape: [1], values: [Float(queuePointer)]),
    ]
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
