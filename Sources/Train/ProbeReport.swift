import Data
import Dist
import Foundation
import Model

/// The evaluation a pretraining run is judged by, for images and audio alike: linear probes
/// of the trained encoder's features on each label slot of the dataset, against a randomly
/// initialised encoder, the raw input (when small enough to probe) and the majority class.
public enum ProbeReport {
  /// One line of the table: a feature set and its accuracy on each reported slot.
  public struct Row: Sendable {
    public var name: String
    /// Feature dimension (0 for the majority class).
    public var dim: Int
    /// Test accuracy per slot, in the order of the slots the report was asked for.
    public var accuracies: [Double]
    /// Weighted kNN test accuracy per slot on the same features (`nil`: not computed).
    public var knn: [Double]?
    public var seconds: Double
  }

  /// The label slots to report: the `requested` names (an error naming the missing one and
  /// the dataset's slots), else those of `preferred` the data has, else every slot.
  public static func slots(
    _ available: [LabelSlot], requested: [String] = [], preferred: [String] = ["word", "language", "voice"]
  ) throws -> [(name: String, slot: Int)] {
    func index(_ name: String) -> Int? { available.firstIndex { $0.name == name } }
    if !requested.isEmpty {
      return try requested.map { name in
        guard let s = index(name) else {
          throw ConfigError(
            message: "no label '\(name)' in the data (labels: \(available.map(\.name).joined(separator: ", ")))")
        }
        return (name, s)
      }
    }
    let found = preferred.compactMap { n in index(n).map { (n, $0) } }
    return found.isEmpty ? available.enumerated().map { ($1.name, $0) } : found
  }

  /// Features of the first `limit` samples of `train` and `test` on `layers` (gathered to rank
  /// 0; `nil` elsewhere), row `i` of each set being sample `i` labelled by slot 0.
  public static func features(
    encoder: any Encoder, train: EvalSource, test: EvalSource, layers: [FeatureLayer], comm: Communicator,
    batch: Int, limit: Int?
  ) throws -> (train: [FeatureLayer: FeatureSet], test: [FeatureLayer: FeatureSet])? {
    let tr = try FeatureExtractor.extract(
      encoder: encoder, eval: train, layers: layers, comm: comm, batch: batch, limit: limit)
    let te = try FeatureExtractor.extract(
      encoder: encoder, eval: test, layers: layers, comm: comm, batch: batch, limit: limit)
    guard let tr, let te else { return nil }
    return (tr, te)
  }

  /// Linear probes of one encoder on every layer and slot (and a weighted kNN with `knnK`
  /// neighbours when it is > 0): one row per layer, named `name (layer)`, its time including the
  /// feature extraction. Rows on rank 0, `[]` elsewhere.
  public static func probe(
    _ name: String, encoder: any Encoder, train: EvalSource, test: EvalSource, layers: [FeatureLayer],
    slots: [(name: String, slot: Int)], comm: Communicator, epochs: Int, batch: Int, limit: Int?,
    lr: Float = Probes.defaultLR, weightDecay: Float = Probes.defaultWeightDecay, knnK: Int = 0
  ) throws -> [Row] {
    let t0 = now()
    guard let (tr, te) = try features(
      encoder: encoder, train: train, test: test, layers: layers, comm: comm, batch: batch, limit: limit)
    else { return [] }
    let extractSeconds = now() - t0
    return try layers.map { l in
      let t1 = now()
      let acc = try slots.map {
        try linear(
          train: tr[l]!, of: train, test: te[l]!, of: test, slot: $0.slot, epochs: epochs, lr: lr, weightDecay: weightDecay)
      }
      let knn = knnK > 0 ? slots.map { knnAccuracy(train: tr[l]!, of: train, test: te[l]!, of: test, slot: $0.slot, k: knnK) } : nil
      return Row(
        name: "\(name) (\(l.rawValue))", dim: tr[l]!.dim, accuracies: acc, knn: knn, seconds: now() - t1 + extractSeconds)
    }
  }

  /// Weighted kNN test accuracy (`Probes.knn`: cosine similarity, votes exp(sim/0.07)) on `slot`.
  public static func knnAccuracy(
    train: FeatureSet, of trainSource: EvalSource, test: FeatureSet, of testSource: EvalSource, slot: Int, k: Int
  ) -> Double {
    Probes.knn(
      train: labelled(train, trainSource, slot: slot), test: labelled(test, testSource, slot: slot), k: k,
      classes: trainSource.labelSlots[slot].classCount)
  }

  /// Linear-probe test accuracy on `slot`, from features of `trainSource` and `testSource`
  /// (row `i` is sample `i`).
  public static func linear(
    train: FeatureSet, of trainSource: EvalSource, test: FeatureSet, of testSource: EvalSource, slot: Int, epochs: Int,
    lr: Float = Probes.defaultLR, weightDecay: Float = Probes.defaultWeightDecay
  ) throws -> Double {
    let tr = labelled(train, trainSource, slot: slot)
    return try Probes.linear(
      train: tr, test: labelled(test, testSource, slot: slot), classes: trainSource.labelSlots[slot].classCount,
      epochs: epochs, batch: min(256, max(1, tr.count)), lr: lr, weightDecay: weightDecay)
  }

  /// `features` (row `i` is sample `i` of `source`) with the labels of `slot`.
  public static func labelled(_ features: FeatureSet, _ source: EvalSource, slot: Int) -> FeatureSet {
    slot == 0 ? features : features.relabeled(source.labels(indices: 0..<features.count, slot: slot))
  }

  /// Accuracy of always answering the most frequent class of `slot` among the first `limit`
  /// samples of `train` (ties: the lower class) on the first `limit` of `test`.
  public static func majority(train: EvalSource, test: EvalSource, slot: Int, limit: Int? = nil) -> Double {
    let nTrain = min(train.count, limit ?? train.count)
    let nTest = min(test.count, limit ?? test.count)
    var counts = [Int: Int]()
    for i in 0..<nTrain { counts[train.label(i, slot: slot), default: 0] += 1 }
    guard let top = counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) })?.key else {
      return 0
    }
    let hits = (0..<nTest).filter { test.label($0, slot: slot) == top }.count
    return Double(hits) / Double(max(nTest, 1))
  }

  /// The widest features `run` probes.
  public static let maxProbeDim = 8192

  /// Trained encoder, random encoder, the raw input and the majority class, printed as a
  /// table on rank 0; with `knnK` > 0 a second table of weighted kNN accuracies on the same
  /// features.
  /// - Returns: each row's name (with the slot when there are several) and test accuracy, then
  ///   the kNN ones named `<row> kNN` (rank 0; `[]` elsewhere), for the run's records
  ///   (`RunRecord.recordProbes`).
  @discardableResult
  public static func run(
    config: PretrainConfig, trained: any Encoder, comm: Communicator, console: Console, epochs: Int,
    pretrainSeconds: Double, limit: Int? = nil, knnK: Int = 0
  ) throws -> [(name: String, accuracy: Double)] {
    let data = try Datasets.open(config)
    let train = try data.evaluation(.train)
    let test = try data.evaluation(.test)
    let slots = try slots(train.labelSlots, preferred: data.reportSlots)
    // Features of every train sample are held on rank 0: leave out layers too wide for that
    // (conv6's 25088-d pre-pool map on 60000 images would be 6 GB).
    let dims: [FeatureLayer: Int] = [.pooled: trained.featureDim, .prePool: trained.prePoolDim]
    let layers = data.probeLayers.filter { dims[$0]! <= maxProbeDim }
    for l in data.probeLayers where !layers.contains(l) {
      console.say("linear probes: \(l.rawValue) features (\(dims[l]!)-d) left out (more than \(maxProbeDim)); use `eval linear --layer \(l.rawValue) --limit N`")
    }
    let counts = "\(min(train.count, limit ?? train.count)) train, \(min(test.count, limit ?? test.count)) test samples"
    let layerNames = layers.map(\.rawValue).joined(separator: " and ")
    console.say(
      "linear probes (\(epochs) epochs of logistic regression on standardised frozen \(layerNames) features; \(counts))…")
    var rows = try probe(
      "\(config.method) \(config.model)", encoder: trained, train: train, test: test, layers: layers, slots: slots,
      comm: comm, epochs: epochs, batch: data.evalBatch, limit: limit, knnK: knnK)
    var randomConfig = config
    randomConfig.seed = config.seed &+ 1
    let random = try Methods.make(randomConfig, collective: LocalCollective())
    rows += try probe(
      "random \(config.model)", encoder: random.encoder, train: train, test: test, layers: layers, slots: slots,
      comm: comm, epochs: epochs, batch: data.evalBatch, limit: limit, knnK: knnK)
    guard comm.rank == 0 else { return [] }
    if let rawName = data.rawInputName {
      let t0 = now()
      let tr = try FeatureExtractor.pixels(eval: train, limit: limit)
      let te = try FeatureExtractor.pixels(eval: test, limit: limit)
      let acc = try slots.map { try linear(train: tr, of: train, test: te, of: test, slot: $0.slot, epochs: epochs) }
      let knn = knnK > 0 ? slots.map { knnAccuracy(train: tr, of: train, test: te, of: test, slot: $0.slot, k: knnK) } : nil
      rows.append(Row(name: rawName, dim: tr.dim, accuracies: acc, knn: knn, seconds: now() - t0))
    }
    rows.append(Row(
      name: "majority class", dim: 0,
      accuracies: slots.map { majority(train: train, test: test, slot: $0.slot, limit: limit) }, seconds: 0))
    console.say("| features | dim | " + slots.map { "\($0.name) accuracy" }.joined(separator: " | ") + " | probe time |")
    console.say("|---|---:|" + slots.map { _ in "---:|" }.joined() + "---:|")
    for r in rows {
      let cells = r.accuracies.map { String(format: "%.2f%%", $0 * 100) }.joined(separator: " | ")
      console.say("| \(r.name) | \(r.dim > 0 ? "\(r.dim)" : "-") | \(cells) | " + String(format: "%.1f s |", r.seconds))
    }
    let knnRows = rows.filter { $0.knn != nil }
    if !knnRows.isEmpty {
      console.say("weighted kNN (k = \(knnK), cosine similarity, votes exp(sim / 0.07)) on the same features:")
      console.say("| features | dim | " + slots.map { "\($0.name) kNN accuracy" }.joined(separator: " | ") + " |")
      console.say("|---|---:|" + slots.map { _ in "---:|" }.joined())
      for r in knnRows {
        console.say("| \(r.name) | \(r.dim) | " + r.knn!.map { String(format: "%.2f%%", $0 * 100) }.joined(separator: " | ") + " |")
      }
    }
    console.say(String(format: "pretraining took %.1f s", pretrainSeconds))
    func named(_ r: Row, _ slot: String, suffix: String = "") -> String {
      (slots.count == 1 ? r.name : "\(r.name) \(slot)") + suffix
    }
    return rows.flatMap { r in zip(slots, r.accuracies).map { (name: named(r, $0.name), accuracy: $1) } }
      + knnRows.flatMap { r in zip(slots, r.knn!).map { (name: named(r, $0.name, suffix: " kNN"), accuracy: $1) } }
  }
}
