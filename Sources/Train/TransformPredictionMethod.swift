import Model

/// Transformation prediction: encoder → MLP head predicting which augmentations each view
/// received (multi-hot, BCE over the global batch). Every `logEvery` steps rank 0 prints the
/// loss and the macro mAP of its rows; `lastMacroAP` is the same figure for callers.
public final class TransformPredictionMethod: SingleBranchMethod, SSLMethod {
  let collective: Collective
  let logEvery: Int

  public required init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    logEvery = config.logEvery
    try super.init(config: config, collective: collective) { arena, d in
      TransformPredictionBranch(
        arena: arena, inFeatures: d, labelCount: config.transformLabelCount, config: config, collective: collective)
    }
  }

  public var lastMacroAP: Double { (branch as! TransformPredictionBranch).lastMacroAP }

  public func afterOptimizerStep(step: Int) throws {
    guard step % logEvery == 0 else { return }
    rankZeroPrint(
      collective,
      "transform-pred step \(step): bce \(String(format: "%.4f", lastLoss)) · macro mAP \(String(format: "%.4f", lastMacroAP)) (rank 0 rows)")
  }
}
