import Data
import Dist
import Foundation
import Model

extension FeatureSet {
  /// The same features with other labels (one label slot of an audio corpus).
  public func relabeled(_ labels: [Int]) -> FeatureSet {
    FeatureSet(dim: dim, values: values, labels: labels)
  }
}

extension FeatureExtractor {
  /// `extract` over the clips of `source` — each clip's centre `length` samples, through `mel`
  /// when given — in batches of 8 clips.
  public static func extract(
    encoder: any Encoder, audio source: AudioSource, length: Int, mel: LogMelSpectrogram?,
    layers: [FeatureLayer], comm: Communicator, batch: Int = 8
  ) throws -> [FeatureLayer: FeatureSet]? {
    try extract(
      encoder: encoder, eval: AudioEvalLoader(source: source, length: length, mel: mel), layers: layers, comm: comm,
      batch: batch)
  }
}

/// Linear probes and few-shot tasks of an audio encoder, per label slot.
public enum AudioEvaluation {
  /// The label slots to report: the requested ones present in `source`, by default word,
  /// language and voice (or every slot of a corpus that has none of them).
  public static func slots(_ source: AudioSource, requested: [String]?) throws -> [(name: String, slot: Int)] {
    if let requested, !requested.isEmpty {
      return try requested.map { name in
        guard let s = source.slot(named: name) else {
          throw ConfigError(message: "no label '\(name)' in the data (labels: \(source.labelNames.joined(separator: ", ")))")
        }
        return (name, s)
      }
    }
    let preferred = ["word", "language", "voice"].compactMap { n in source.slot(named: n).map { (n, $0) } }
    return preferred.isEmpty ? source.labelNames.enumerated().map { ($1, $0) } : preferred
  }

  /// Features of `source` (row `i` is clip `i`, as `FeatureExtractor.extract` gives them)
  /// relabeled with the classes of `slot`.
  public static func labelled(_ features: FeatureSet, _ source: AudioSource, slot: Int) -> FeatureSet {
    features.relabeled((0..<features.count).map { source.label($0, slot: slot) })
  }

  /// Linear-probe test accuracy on `slot`, from features of the train and test splits.
  public static func linear(
    train: FeatureSet, of trainSource: AudioSource, test: FeatureSet, of testSource: AudioSource,
    slot: Int, epochs: Int
  ) throws -> Double {
    let tr = labelled(train, trainSource, slot: slot)
    return try Probes.linear(
      train: tr, test: labelled(test, testSource, slot: slot), classes: trainSource.classNames[slot].count,
      epochs: epochs, batch: min(256, max(1, tr.count)))
  }

  /// Accuracy of always answering the train split's most frequent class of `slot`.
  public static func majority(train: AudioSource, test: AudioSource, slot: Int) -> Double {
    var counts = [Int: Int]()
    for i in 0..<train.count { counts[train.label(i, slot: slot), default: 0] += 1 }
    guard let top = counts.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) })?.key else { return 0 }
    let hits = (0..<test.count).filter { test.label($0, slot: slot) == top }.count
    return Double(hits) / Double(max(test.count, 1))
  }
}
