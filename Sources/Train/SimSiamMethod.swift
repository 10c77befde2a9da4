import Model

/// An encoder and one `MethodBranch` on one arena (`encoder.*`, then the branch's names).
/// SimSiam and transformation prediction are such methods.
public class SingleBranchMethod: SSLMethod {
  public let arena: ParameterArena
  public let encoder: any Encoder
  let branch: MethodBranch

  init(config: PretrainConfig, collective: Collective, makeBranch: (ParameterArena, Int) -> MethodBranch) throws {
    arena = ParameterArena()
    encoder = try SimCLRNetwork.makeEncoder(
      config.model, arena: arena, prefix: "encoder", collective: config.syncBN ? collective : nil,
      input: config.sampleShape)
    branch = makeBranch(arena, encoder.featureDim)
    arena.allocate(seed: config.seed)
  }

  public var progressReporters: [ProgressHooks] {
    branch.reporters + [encoder as? ProgressHooks].compactMap { $0 }
  }

  public func forwardBackward(_ x: Tensor, transforms: UnsafePointer<Float>?, lossScale: Float) throws -> Float {
    let h = try encoder.forward(x, training: true)
    let value = try branch.forward(h.reshaped(Shape(h.shape.n, h.shape.perSample)), labels: transforms)
    let dh = try branch.backward(scale: lossScale)
    _ = try encoder.backward(dh.reshaped(h.shape))
    return value
  }

  public func forwardFLOPs(_ shape: Shape) -> Int? {
    guard let enc = encoder as? FLOPCounting else { return nil }
    let (fe, h) = enc.forwardFLOPs(shape)
    return fe + branch.forwardFLOPs(Shape(h.n, h.perSample))
  }
}

/// SimSiam (Chen & He 2021): encoder → 3-layer projector → bottleneck predictor; symmetric
/// negative cosine with stop-gradient, mean over the global batch; sync BN throughout.
public final class SimSiamMethod: SingleBranchMethod {
  public init(config: PretrainConfig, collective: Collective) throws {
    try super.init(config: config, collective: collective) { arena, d in
      SimSiamBranch(arena: arena, inFeatures: d, config: config, collective: collective)
    }
  }
}

/// Transformation prediction: encoder → MLP head predicting which augmentations each view
/// received (multi-hot, BCE over the global batch). Every `logEvery` steps rank 0 prints the
/// loss and the macro mAP of its rows; `lastMacroAP` is the same figure for callers.
public final class TransformPredictionMethod: SingleBranchMethod {
  let collective: Collective
  let logEvery: Int
  let accumulate: Int
  private var calls = 0

  public init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    logEvery = config.logEvery
    accumulate = config.accumulate
    try super.init(config: config, collective: collective) { arena, d in
      TransformPredictionBranch(
        arena: arena, inFeatures: d, labelCount: config.transformLabelCount, config: config, collective: collective)
    }
  }

  public var lastMacroAP: Double { (branch as! TransformPredictionBranch).lastMacroAP }

  public override func forwardBackward(_ x: Tensor, transforms: UnsafePointer<Float>?, lossScale: Float) throws -> Float {
    let value = try super.forwardBackward(x, transforms: transforms, lossScale: lossScale)
    calls += 1
    if calls % accumulate == 0, (calls / accumulate) % logEvery == 0 {
      rankZeroPrint(
        collective,
        "transform-pred step \(calls / accumulate): bce \(String(format: "%.4f", value)) · macro mAP \(String(format: "%.4f", lastMacroAP)) (rank 0 rows)")
    }
    return value
  }
}
