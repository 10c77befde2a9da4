import Model

extension Options {
  public var byolMomentum: ConfigOption<Double> { ConfigOption(
    "byolMomentum", default: 0.996,
    help: "BYOL: base target momentum m0; the target follows m = 1 − (1 − m0)(cos(πk/K) + 1)/2 from m0 to 1 over the run's K steps.",
    check: { (0...1).contains($0) ? nil : "must be in [0, 1]" }) }
  public var byolHidden: ConfigOption<Int> { ConfigOption(
    "byolHidden", default: 512, resume: .mustMatch,
    help:
      "BYOL: hidden width of the projector and the predictor (Linear → BN → ReLU → Linear; output projection-dim). The paper's 4096 (output 256) is for ResNet-50; the default 512 is scaled down for Fashion-MNIST.",
    check: positive) }
}

/// BYOL (Grill et al. 2020): an online network (encoder → projector → predictor) predicts a
/// target network's projection (encoder → projector) of the other view; the target is an EMA
/// of the online encoder and projector (`MomentumTarget`), updated after every optimizer step
/// with BYOL's cosine momentum schedule; symmetric loss `BYOLLoss` over the global batch.
///
/// Arena (trained, exported): `encoder.*`, `projector.*`, `predictor.*`. Method state: the
/// target's parameters `target.encoder.*`, `target.projector.*`. Both views pass through both
/// networks as one batch of 2B (DESIGN.md invariant 9); the target's BN uses batch statistics
/// (sync BN when `syncBN`), like the online network's.
public final class BYOLMethod: SSLMethod, RunLengthAware {
  public static var options: [any AnyConfigOption] { [Options().byolMomentum, Options().byolHidden] }

  public let arena = ParameterArena()
  public let encoder: any Encoder
  let projector: ProjectionHead
  let predictor: ProjectionHead
  let target: MomentumTarget<(encoder: any Encoder, projector: ProjectionHead)>
  let loss: BYOLLoss
  let baseMomentum: Double
  public var totalSteps = 0
  /// The momentum of the last target update (logs, tests).
  public private(set) var lastMomentum: Float = .nan
  /// [2B, D] ∂L/∂p, views 1 then 2.
  private let dp = Storage()

  public init(config: PretrainConfig, collective: Collective) throws {
    baseMomentum = config.byolMomentum
    let bnWorld = config.syncBN ? collective : nil
    func build(_ a: ParameterArena) throws -> (encoder: any Encoder, projector: ProjectionHead) {
      let e = try SimCLRNetwork.makeEncoder(config: config, arena: a, collective: bnWorld)
      let p = ProjectionHead(
        arena: a, prefix: "projector", inFeatures: e.featureDim, hidden: config.byolHidden,
        outFeatures: config.projectionDim, makeNorm: SimCLRNetwork.norm(a, bnWorld))
      return (e, p)
    }
    let online = try build(arena)
    encoder = online.encoder
    projector = online.projector
    predictor = ProjectionHead(
      arena: arena, prefix: "predictor", inFeatures: config.projectionDim, hidden: config.byolHidden,
      outFeatures: config.projectionDim, makeNorm: SimCLRNetwork.norm(arena, bnWorld))
    arena.allocate(seed: config.seed)
    target = try MomentumTarget(following: arena, build: build)
    loss = BYOLLoss(collective: collective)
  }

  public var progressReporters: [ProgressHooks] {
    [predictor, projector, encoder as? ProgressHooks].compactMap { $0 }
  }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let h = try encoder.forward(batch.views, training: true)
    let z = try projector.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), training: true)
    let p = try predictor.forward(z, training: true)
    let ht = try target.network.encoder.forward(batch.views, training: true)
    let t = try target.network.projector.forward(ht.reshaped(Shape(ht.shape.n, ht.shape.perSample)), training: true)
    let s = Shape(p.shape.n / 2, p.shape.perSample)
    let value = try loss.forward(
      p1: Tensor(p.data, s), p2: Tensor(p.data + s.count, s), t1: Tensor(t.data, s), t2: Tensor(t.data + s.count, s))
    let (dp1, dp2) = try loss.backward()
    let g = dp.tensor(p.shape)
    g.data.update(from: dp1.data, count: dp1.count)
    (g.data + dp1.count).update(from: dp2.data, count: dp2.count)
    scaleInPlace(g, lossScale)
    let dz = try predictor.backward(g)
    let dh = try projector.backward(dz)
    _ = try encoder.backward(dh.reshaped(h.shape))
    return TaskLosses("byol", value)
  }

  /// The target moves toward the online network with the momentum of step `step`.
  public func afterOptimizerStep(step: Int) throws {
    lastMomentum = cosineMomentum(base: baseMomentum, step: step - 1, total: totalSteps)
    target.update(momentum: lastMomentum)
  }

  public func stateEntries() -> [SafeTensors.Entry] { target.stateEntries() }

  public func restoreState(_ entries: [String: SafeTensors.Entry], path: String) throws {
    try Self.restore(entries, into: stateEntries(), path: path) { name, values in
      guard target.restore(name: name, values: values) else {
        throw CheckpointError(path: path, reason: "method state '\(name)' does not fit the target network")
      }
    }
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    let (fz, z) = projector.forwardFLOPs(Shape(h.n, h.perSample))
    // The target's forward (encoder and projector) runs too.
    return 2 * (fe + fz) + predictor.forwardFLOPs(z).flops
  }
}
