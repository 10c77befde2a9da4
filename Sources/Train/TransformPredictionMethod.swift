import Model

/// Transformation prediction: encoder → MLP head predicting which augmentations each view
/// received (multi-hot, BCE over the global batch). On `--log-every` steps, at most once per
/// `--log-interval` seconds (`MethodLineCadence`), rank 0 prints the
/// loss and the macro mAP of its rows; `lastMacroAP` is the same figure for callers.
public final class TransformPredictionMethod: SingleBranchMethod, SSLMethod {
  let collective: Collective
  /// When the per-step line prints (`--log-every`, `--log-interval`).
  var lines: MethodLineCadence

  public required init(config: PretrainConfig, collective: Collective) throws {
    self.collective = collective
    lines = MethodLineCadence(config: config)
    try super.init(config: config, collective: collective) { arena, d in
      TransformPredictionBranch(
        arena: arena, inFeatures: d, labelCount: config.transformLabelCount, config: config, collective: collective)
    }
  }

  public var lastMacroAP: Double { (branch as! TransformPredictionBranch).lastMacroAP }

  public func afterOptimizerStep(step: Int) throws {
    guard lines.due(step: step) else { return }
    rankZeroPrint(
      collective,
      "transform-pred step \(step): bce \(String(format: "%.4f", lastLoss)) · macro mAP \(String(format: "%.4f", lastMacroAP)) (rank 0 rows)")
  }
}
