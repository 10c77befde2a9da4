import Model
#if canImport(Glibc)
  import Glibc
#endif

/// Ranking metrics of multi-label tagging (MagnaTagATune's benchmark figures): per-class
/// ROC-AUC and PR-AUC (average precision), macro-averaged over the classes that have both
/// positive and negative examples.
public enum MultiLabelMetrics {
  /// Area under the ROC curve of one class: the probability that a random positive scores
  /// above a random negative, ties counting one half (the Mann–Whitney U statistic over
  /// `positives·negatives`, with average ranks for tied scores). Nil without both classes.
  public static func rocAUC(scores: [Float], labels: [Bool]) -> Double? {
    precondition(scores.count == labels.count)
    let positives = labels.filter { $0 }.count
    let negatives = labels.count - positives
    guard positives > 0, negatives > 0 else { return nil }
    let order = scores.indices.sorted { scores[$0] < scores[$1] }
    var rankSum = 0.0  // Σ of the (1-based, tie-averaged) ranks of the positives
    var i = 0
    while i < order.count {
      var j = i
      while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
      let rank = Double(i + j + 2) / 2
      for k in i...j where labels[order[k]] { rankSum += rank }
      i = j + 1
    }
    let u = rankSum - Double(positives) * Double(positives + 1) / 2
    return u / (Double(positives) * Double(negatives))
  }

  /// Average precision of one class, as scikit-learn's `average_precision_score`:
  /// `AP = Σ_n (R_n − R_{n−1})·P_n` over the distinct score thresholds, highest first (tied
  /// scores enter together; no interpolation). Nil without positives.
  public static func averagePrecision(scores: [Float], labels: [Bool]) -> Double? {
    precondition(scores.count == labels.count)
    let positives = labels.filter { $0 }.count
    guard positives > 0 else { return nil }
    let order = scores.indices.sorted { scores[$0] > scores[$1] }
    var tp = 0, seen = 0
    var previousRecall = 0.0
    var ap = 0.0
    var i = 0
    while i < order.count {
      var j = i
      while j + 1 < order.count && scores[order[j + 1]] == scores[order[i]] { j += 1 }
      for k in i...j where labels[order[k]] { tp += 1 }
      seen = j + 1
      let recall = Double(tp) / Double(positives)
      ap += (recall - previousRecall) * Double(tp) / Double(seen)
      previousRecall = recall
      i = j + 1
    }
    return ap
  }

  /// Macro averages over classes of `scores` and `labels`, both `[count, classes]` row-major.
  /// Classes without both positives and negatives are left out (as the MTAT literature
  /// does); `classesUsed` says how many remained.
  public static func macro(
    scores: [Float], labels: [Bool], classes: Int
  ) -> (rocAUC: Double, prAUC: Double, classesUsed: Int) {
    precondition(classes > 0 && scores.count == labels.count && scores.count % classes == 0)
    let n = scores.count / classes
    var roc = 0.0, pr = 0.0, used = 0
    for c in 0..<classes {
      let s = (0..<n).map { scores[$0 * classes + c] }
      let l = (0..<n).map { labels[$0 * classes + c] }
      guard let a = rocAUC(scores: s, labels: l), let p = averagePrecision(scores: s, labels: l) else { continue }
      roc += a
      pr += p
      used += 1
    }
    return used > 0 ? (roc / Double(used), pr / Double(used), used) : (.nan, .nan, 0)
  }
}

/// A multi-label linear probe: one logistic regression per class on frozen features
/// (`Linear(D, K)` trained with the mean binary cross-entropy with logits, full batch, Adam),
/// evaluated with macro ROC-AUC and PR-AUC, the MagnaTagATune protocol.
public struct MultiLabelProbe {
  public var epochs = 300
  public var learningRate: Float = 0.05
  public var weightDecay: Float = 1e-4

  public init(epochs: Int = 300, learningRate: Float = 0.05, weightDecay: Float = 1e-4) {
    self.epochs = epochs
    self.learningRate = learningRate
    self.weightDecay = weightDecay
  }

  /// Trained weights [K, D] and biases [K].
  public struct Model {
    public var weights: [Float]
    public var bias: [Float]
    public var dim: Int
    public var classes: Int

    /// Logits [N, K] of `x` [N, D].
    public func logits(_ x: [Float]) -> [Float] {
      let n = x.count / dim
      var z = [Float](repeating: 0, count: n * classes)
      for i in 0..<n { for k in 0..<classes { z[i * classes + k] = bias[k] } }
      Gemm.sgemm(
        transA: false, transB: true, m: n, n: classes, k: dim, alpha: 1, a: x, lda: dim,
        b: weights, ldb: dim, beta: 1, c: &z, ldc: classes)
      return z
    }
  }

  /// Fits on `x` [N, D] with 0/1 `targets` [N, K].
  public func fit(_ x: [Float], targets: [Float], dim: Int, classes: Int) -> Model {
    precondition(dim > 0 && classes > 0 && x.count % dim == 0 && targets.count == x.count / dim * classes)
    let n = x.count / dim
    var model = Model(weights: [Float](repeating: 0, count: classes * dim), bias: [Float](repeating: 0, count: classes), dim: dim, classes: classes)
    var mW = model.weights, vW = model.weights, mB = model.bias, vB = model.bias
    var dW = model.weights
    let (b1, b2, eps): (Float, Float, Float) = (0.9, 0.999, 1e-8)
    for step in 1...max(1, epochs) {
      var dz = model.logits(x)
      for i in 0..<dz.count { dz[i] = (1 / (1 + expf(-dz[i])) - targets[i]) / Float(n) }
      // dW [K, D] = dZᵀ [K, N] · X [N, D]
      Gemm.sgemm(
        transA: true, transB: false, m: classes, n: dim, k: n, alpha: 1, a: dz, lda: classes,
        b: x, ldb: dim, beta: 0, c: &dW, ldc: dim)
      let c1 = 1 - powf(b1, Float(step)), c2 = 1 - powf(b2, Float(step))
      for j in 0..<dW.count {
        let g = dW[j] + weightDecay * model.weights[j]
        mW[j] = b1 * mW[j] + (1 - b1) * g
        vW[j] = b2 * vW[j] + (1 - b2) * g * g
        model.weights[j] -= learningRate * (mW[j] / c1) / ((vW[j] / c2).squareRoot() + eps)
      }
      for k in 0..<classes {
        var g: Float = 0
        for i in 0..<n { g += dz[i * classes + k] }
        mB[k] = b1 * mB[k] + (1 - b1) * g
        vB[k] = b2 * vB[k] + (1 - b2) * g * g
        model.bias[k] -= learningRate * (mB[k] / c1) / ((vB[k] / c2).squareRoot() + eps)
      }
    }
    return model
  }

  /// Fits on the training set and reports macro ROC-AUC and PR-AUC on the test set.
  public func evaluate(
    train: [Float], trainTargets: [Float], test: [Float], testTargets: [Float], dim: Int, classes: Int
  ) -> (rocAUC: Double, prAUC: Double, classesUsed: Int) {
    let model = fit(train, targets: trainTargets, dim: dim, classes: classes)
    return MultiLabelMetrics.macro(scores: model.logits(test), labels: testTargets.map { $0 > 0.5 }, classes: classes)
  }
}
