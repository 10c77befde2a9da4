import Model

extension Options {
  public var predictorDim: ConfigOption<Int> { ConfigOption(
    "predictorDim", default: 0, resume: .mustMatch,
    help: "SimSiam predictor bottleneck width (0: projection-dim / 4).", check: nonNegative) }
}

/// An encoder and one `MethodBranch` on one arena (`encoder.*`, then the branch's names).
/// SimSiam and transformation prediction are such methods.
public class SingleBranchMethod {
  public let arena: ParameterArena
  public let encoder: any Encoder
  let branch: MethodBranch
  /// The last forward's loss.
  var lastLoss: Float = .nan

  init(config: PretrainConfig, collective: Collective, makeBranch: (ParameterArena, Int) -> MethodBranch) throws {
    arena = ParameterArena()
    encoder = try SimCLRNetwork.makeEncoder(config: config, arena: arena, collective: config.syncBN ? collective : nil)
    branch = makeBranch(arena, encoder.featureDim)
    arena.allocate(seed: config.seed)
  }

  public var progressReporters: [ProgressHooks] {
    branch.reporters + [encoder as? ProgressHooks].compactMap { $0 }
  }

  public func forwardBackward(_ batch: MethodBatch, lossScale: Float) throws -> TaskLosses {
    let h = try encoder.forward(batch.views, training: true)
    let value = try branch.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), labels: batch.transforms)
    let dh = try branch.backward(scale: lossScale)
    _ = try encoder.backward(dh.reshaped(h.shape))
    lastLoss = value
    return TaskLosses(branch.lossName, value)
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    return fe + branch.forwardFLOPs(Shape(h.n, h.perSample))
  }
}

/// SimSiam (Chen & He 2021): encoder → 3-layer projector → bottleneck predictor; symmetric
/// negative cosine with stop-gradient, mean over the global batch; sync BN throughout.
public final class SimSiamMethod: SingleBranchMethod, SSLMethod {
  public static var options: [any AnyConfigOption] { [Options().predictorDim] }

  public required init(config: PretrainConfig, collective: Collective) throws {
    try super.init(config: config, collective: collective) { arena, d in
      SimSiamBranch(arena: arena, inFeatures: d, config: config, collective: collective)
    }
  }
}

