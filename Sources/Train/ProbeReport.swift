import Data
import Dist
import Foundation
import Model

/// The evaluation a pretraining run is judged by: linear probes on the trained encoder's
/// pooled and pre-pool features, against a randomly initialised encoder and raw pixels.
public enum ProbeReport {
  public struct Row {
    public var name: String
    public var dim: Int
    public var accuracy: Double
    public var seconds: Double
  }

  /// Fashion-MNIST train and test of the configuration's directory, as cached record shards
  /// read by offset (each rank reads only the samples it extracts).
  public static func splits(_ config: PretrainConfig) throws -> (ImageSource, ImageSource) {
    (
      try FashionMNIST.shard(split: .train, directory: config.dataDir),
      try FashionMNIST.shard(split: .test, directory: config.dataDir)
    )
  }

  /// Linear probes of one encoder on the requested layers; rows on rank 0, `[]` elsewhere.
  public static func probe(
    _ name: String, encoder: any Encoder, train: ImageSource, test: ImageSource,
    layers: [FeatureLayer], comm: Communicator, epochs: Int, limit: Int?
  ) throws -> [Row] {
    let t0 = now()
    let tr = try FeatureExtractor.extract(encoder: encoder, source: train, layers: layers, comm: comm, limit: limit)
    let te = try FeatureExtractor.extract(encoder: encoder, source: test, layers: layers, comm: comm, limit: limit)
    guard let tr, let te else { return [] }
    let extractSeconds = now() - t0
    return try layers.map { l in
      let t1 = now()
      let acc = try Probes.linear(train: tr[l]!, test: te[l]!, epochs: epochs)
      return Row(name: "\(name) (\(l.rawValue))", dim: tr[l]!.dim, accuracy: acc, seconds: now() - t1 + extractSeconds)
    }
  }

  /// Trained encoder, random encoder and raw pixels, printed as a table on rank 0.
  /// - Returns: each row's name and test accuracy (rank 0; `[]` elsewhere), for the run's
  ///   records (`RunRecord.recordProbes`).
  @discardableResult
  public static func run(
    config: PretrainConfig, trained: any Encoder, comm: Communicator, console: Console, epochs: Int,
    pretrainSeconds: Double, limit: Int? = nil
  ) throws -> [(name: String, accuracy: Double)] {
    if config.isAudio {
      return try runAudio(
        config: config, trained: trained, comm: comm, console: console, epochs: epochs, pretrainSeconds: pretrainSeconds)
    }
    let (train, test) = try splits(config)
    console.say("linear probes (\(epochs) epochs of logistic regression on standardised frozen features)…")
    var rows = try probe(
      "\(config.method) \(config.model)", encoder: trained, train: train, test: test, layers: FeatureLayer.allCases,
      comm: comm, epochs: epochs, limit: limit)
    var randomConfig = config
    randomConfig.seed = config.seed &+ 1
    let random = try Methods.make(randomConfig, collective: LocalCollective())
    rows += try probe(
      "random \(config.model)", encoder: random.encoder, train: train, test: test,
      layers: FeatureLayer.allCases, comm: comm, epochs: epochs, limit: limit)
    if comm.rank == 0 {
      let t0 = now()
      let acc = try Probes.linear(
        train: try FeatureExtractor.pixels(source: train, limit: limit),
        test: try FeatureExtractor.pixels(source: test, limit: limit), epochs: epochs)
      rows.append(Row(name: "raw pixels", dim: train.height * train.width, accuracy: acc, seconds: now() - t0))
    }
    console.say("| features | dim | test accuracy | probe time |")
    console.say("|---|---:|---:|---:|")
    for r in rows {
      console.say(String(format: "| %@ | %d | %.2f%% | %.1f s |", r.name, r.dim, r.accuracy * 100, r.seconds))
    }
    console.say(String(format: "pretraining took %.1f s", pretrainSeconds))
    return rows.map { (name: $0.name, accuracy: $0.accuracy) }
  }

  /// One audio encoder's linear-probe accuracies on the label slots (pooled features, the
  /// train split's clips to fit, the test split's to score); `nil` off rank 0.
  public static func audioProbe(
    encoder: any Encoder, config: PretrainConfig, train: AudioSource, test: AudioSource,
    slots: [(name: String, slot: Int)], layer: FeatureLayer = .pooled, comm: Communicator, epochs: Int
  ) throws -> (dim: Int, accuracies: [Double], seconds: Double)? {
    let t0 = now()
    let mel = AudioData.melFrontEnd(config)
    let L = config.resolvedAudioLength
    let tr = try FeatureExtractor.extract(encoder: encoder, audio: train, length: L, mel: mel, layers: [layer], comm: comm)
    let te = try FeatureExtractor.extract(encoder: encoder, audio: test, length: L, mel: mel, layers: [layer], comm: comm)
    guard let tr = tr?[layer], let te = te?[layer] else { return nil }
    let acc = try slots.map {
      try AudioEvaluation.linear(train: tr, of: train, test: te, of: test, slot: $0.slot, epochs: epochs)
    }
    return (tr.dim, acc, now() - t0)
  }

  /// Audio: linear-probe accuracy for word and language (the corpus's slots otherwise) of the
  /// trained encoder against a randomly initialised one, and the majority-class rate, printed
  /// as a table on rank 0.
  @discardableResult
  public static func runAudio(
    config: PretrainConfig, trained: any Encoder, comm: Communicator, console: Console, epochs: Int,
    pretrainSeconds: Double
  ) throws -> [(name: String, accuracy: Double)] {
    let (train, test) = try AudioData.splits(config)
    let wanted = ["word", "language"].filter { train.slot(named: $0) != nil }
    let slots = try AudioEvaluation.slots(train, requested: wanted.isEmpty ? nil : wanted)
    console.say(
      "linear probes (\(epochs) epochs of logistic regression on standardised frozen pooled features; \(train.count) train, \(test.count) test clips)…")
    var rows: [(String, Int, [Double], Double)] = []
    if let r = try audioProbe(encoder: trained, config: config, train: train, test: test, slots: slots, comm: comm, epochs: epochs) {
      rows.append(("\(config.method) \(config.model)", r.dim, r.accuracies, r.seconds))
    }
    var randomConfig = config
    randomConfig.seed = config.seed &+ 1
    let random = try Methods.make(randomConfig, collective: LocalCollective())
    if let r = try audioProbe(
      encoder: random.encoder, config: config, train: train, test: test, slots: slots, comm: comm, epochs: epochs)
    {
      rows.append(("random \(config.model)", r.dim, r.accuracies, r.seconds))
    }
    guard comm.rank == 0 else { return [] }
    rows.append(("majority class", 0, slots.map { AudioEvaluation.majority(train: train, test: test, slot: $0.slot) }, 0))
    console.say("| features | dim | " + slots.map { "\($0.name) accuracy" }.joined(separator: " | ") + " | probe time |")
    console.say("|---|---:|" + slots.map { _ in "---:|" }.joined() + "---:|")
    for (name, dim, acc, seconds) in rows {
      let cells = acc.map { String(format: "%.2f%%", $0 * 100) }.joined(separator: " | ")
      console.say("| \(name) | \(dim > 0 ? "\(dim)" : "-") | \(cells) | " + String(format: "%.1f s |", seconds))
    }
    console.say(String(format: "pretraining took %.1f s", pretrainSeconds))
    return rows.flatMap { r in zip(slots, r.2).map { (name: "\(r.0) \($0.name)", accuracy: $1) } }
  }
}
