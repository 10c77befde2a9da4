import Foundation

/// Choosing the linear probe's own hyper-parameters without looking at the test split: every
/// setting of a grid is fit on the training features minus a held-out tail and scored on that
/// tail; the best one is then refit on all training features and scored once on the test set.
public enum ProbeSweep {
  /// One setting of the probe (`Probes.linear`): epochs, peak learning rate, weight decay.
  public struct Setting: Hashable, Sendable, CustomStringConvertible {
    public var epochs: Int
    public var lr: Float
    public var weightDecay: Float

    public init(epochs: Int, lr: Float, weightDecay: Float) {
      self.epochs = epochs
      self.lr = lr
      self.weightDecay = weightDecay
    }

    public var description: String { "epochs \(epochs), lr \(lr), weight decay \(weightDecay)" }
  }

  /// Every combination of the given values, epochs outermost.
  public static func grid(epochs: [Int], lr: [Float], weightDecay: [Float]) -> [Setting] {
    epochs.flatMap { e in lr.flatMap { l in weightDecay.map { Setting(epochs: e, lr: l, weightDecay: $0) } } }
  }

  /// `set` split into its first `count - holdout` rows (to fit) and its last `holdout` rows
  /// (to validate on). Fashion-MNIST's training order is not sorted by class, so its tail is
  /// a fair sample of the split.
  public static func split(_ set: FeatureSet, holdout: Int) -> (fit: FeatureSet, validation: FeatureSet) {
    precondition(holdout > 0 && holdout < set.count, "holdout \(holdout) must lie in 1..<\(set.count)")
    let n = set.count - holdout
    let d = set.dim
    return (
      FeatureSet(dim: d, values: Array(set.values[0..<(n * d)]), labels: Array(set.labels[0..<n])),
      FeatureSet(dim: d, values: Array(set.values[(n * d)...]), labels: Array(set.labels[n...]))
    )
  }

  /// Validation accuracy of each setting (fit on `train` minus its last `holdout` rows, scored
  /// on those rows), in the order given, and the index of the best (the first on ties).
  /// `progress` is called after each fit.
  public static func validate(
    train: FeatureSet, holdout: Int, classes: Int, settings: [Setting], batch: Int = 256,
    progress: (Setting, Double) -> Void = { _, _ in }
  ) throws -> (accuracies: [Double], best: Int) {
    precondition(!settings.isEmpty, "a sweep needs at least one setting")
    let (fit, validation) = split(train, holdout: holdout)
    var accuracies = [Double]()
    for s in settings {
      let acc = try Probes.linear(
        train: fit, test: validation, classes: classes, epochs: s.epochs, batch: min(batch, fit.count), lr: s.lr,
        weightDecay: s.weightDecay)
      accuracies.append(acc)
      progress(s, acc)
    }
    var best = 0
    for i in accuracies.indices where accuracies[i] > accuracies[best] { best = i }
    return (accuracies, best)
  }
}
