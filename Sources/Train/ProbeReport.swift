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

  /// Loads Fashion-MNIST train and test from the configuration's directory.
  static func splits(_ config: PretrainConfig) throws -> (ImageDataset, ImageDataset) {
    (
      try FashionMNIST.load(split: .train, directory: config.dataDir),
      try FashionMNIST.load(split: .test, directory: config.dataDir)
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
  public static func run(
    config: PretrainConfig, trained: any Encoder, comm: Communicator, console: Console, epochs: Int,
    pretrainSeconds: Double, limit: Int? = nil
  ) throws {
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
  }
}
