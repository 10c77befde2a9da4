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
