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
  /// Runs the frozen encoder (BN in inference mode) over the clips of `source` — each clip's
  /// centre `length` samples, through `mel` when given — each rank on a contiguous share, and
  /// gathers the features to rank 0 (other ranks get `nil`). A feature set's labels are clip
  /// indices into `source`; `relabeled` gives the labels of a slot.
  ///
  /// The feature sizes come from a forward pass of one silent clip, so they are right whatever
  /// input shape the encoder was built for.
  public static func extract(
    encoder: any Encoder, audio source: AudioSource, length: Int, mel: LogMelSpectrogram?,
    layers: [FeatureLayer], comm: Communicator, batch: Int = 8
  ) throws -> [FeatureLayer: FeatureSet]? {
    let total = source.count
    let per = (total + comm.size - 1) / comm.size
    let lo = min(total, comm.rank * per)
    let hi = min(total, lo + per)
    let loader = AudioEvalLoader(source: source, length: length)
    let perSample = mel.map { $0.nMels * $0.frameCount(length) } ?? length
    let sampleShape = mel.map { Shape(1, 1, $0.nMels, $0.frameCount(length)) } ?? Shape(1, 1, 1, length)
    let input = Storage(batch * perSample)
    let wave = Storage(batch * length)
    // Feature sizes from one silent clip.
    for i in 0..<perSample { input.data[i] = 0 }
    let probe = try encoder.forward(Tensor(input.data, sampleShape), training: false)
    let dims: [FeatureLayer: Int] = [.pooled: probe.shape.perSample, .prePool: encoder.prePoolFeatures!.shape.perSample]
    var local: [FeatureLayer: [Float]] = [:]
    for l in layers { local[l] = [Float](repeating: 0, count: per * dims[l]!) }
    var i = lo
    while i < hi {
      let n = min(batch, hi - i)
      if let mel {
        try loader.load(indices: i..<(i + n), into: wave.data)
        mel.batch(wave.data, rows: n, length: length, into: input.data)
      } else {
        try loader.load(indices: i..<(i + n), into: input.data)
      }
      let out = try encoder.forward(
        Tensor(input.data, Shape(n, sampleShape.c, sampleShape.h, sampleShape.w)), training: false)
      for l in layers {
        let t = l == .pooled ? out : encoder.prePoolFeatures!
        let d = dims[l]!
        precondition(t.shape.perSample == d, "feature size \(t.shape.perSample) ≠ \(d)")
        local[l]!.withUnsafeMutableBufferPointer {
          ($0.baseAddress! + (i - lo) * d).update(from: t.data, count: n * d)
        }
      }
      i += n
    }
    var result: [FeatureLayer: FeatureSet] = [:]
    for l in layers {
      // Shares are padded to `per` rows; the ranks' real rows are contiguous clip ranges.
      if let values = try FeatureExtractor.gatherShares(local[l]!, rowWidth: dims[l]!, per: per, total: total, comm: comm) {
        result[l] = FeatureSet(dim: dims[l]!, values: values, labels: Array(0..<total))
      }
    }
    return comm.rank == 0 ? result : nil
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

  /// Features labelled by clip index (`FeatureExtractor.extract(audio:)` of `source`),
  /// relabeled with the classes of `slot`.
  public static func labelled(_ features: FeatureSet, _ source: AudioSource, slot: Int) -> FeatureSet {
    features.relabeled(features.labels.map { source.label($0, slot: slot) })
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
