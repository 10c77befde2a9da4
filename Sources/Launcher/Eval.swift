import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a checkpoint's frozen encoder on Fashion-MNIST test.",
    subcommands: [Linear.self, KNN.self])

  struct Common: ParsableArguments {
    @Option(help: "Checkpoint directory (e.g. runs/simclr/latest).") var checkpoint: String
    @Option(help: "Features: pooled, pre-pool or both.") var layer: String = "both"
    @Option(help: "Use only the first N images of each split (0: all).") var limit: Int = 0
    @Option(help: "Directory of the Fashion-MNIST IDX files (default: the checkpoint's).") var dataDir: String?
    @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0

    func validate() throws {
      guard ["pooled", "pre-pool", "both"].contains(layer) else {
        throw ValidationError("--layer must be pooled, pre-pool or both (got '\(layer)')")
      }
      guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
    }

    var layers: [FeatureLayer] { layer == "both" ? FeatureLayer.allCases : [FeatureLayer(rawValue: layer)!] }

    /// Loads the checkpoint into a fresh network (verifying its hashes).
    func load() throws -> (PretrainConfig, SSLMethod) {
      let ck = try Checkpoint.load(checkpoint)
      var config = ck.state.config
      if let d = dataDir { config.dataDir = d }
      let net = try Methods.make(config, collective: LocalCollective())
      try Checkpoint.restore(net.arena, from: ck.model, path: checkpoint + "/model.safetensors")
      return (config, net)
    }
  }

  struct Linear: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Linear probe (logistic regression on standardised features).")
    @OptionGroup var common: Common
    @Option(help: "Logistic-regression epochs.") var epochs: Int = 30

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (config, net) = try common.load()
        let train = try FashionMNIST.load(split: .train, directory: config.dataDir)
        let test = try FashionMNIST.load(split: .test, directory: config.dataDir)
        let rows = try ProbeReport.probe(
          "\(config.method) \(config.model)", encoder: net.encoder, train: train, test: test,
          layers: common.layers, comm: comm, epochs: epochs, limit: common.limit > 0 ? common.limit : nil)
        for r in rows {
          console.say(String(format: "linear %@: %.2f%% (%d-d, %.1f s)", r.name, r.accuracy * 100, r.dim, r.seconds))
        }
      }
    }
  }

  struct KNN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "knn", abstract: "Weighted k-NN on cosine similarity.")
    @OptionGroup var common: Common
    @Option(help: "Neighbours.") var k: Int = 20

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (config, net) = try common.load()
        let train = try FashionMNIST.load(split: .train, directory: config.dataDir)
        let test = try FashionMNIST.load(split: .test, directory: config.dataDir)
        let limit = common.limit > 0 ? common.limit : nil
        let tr = try FeatureExtractor.extract(encoder: net.encoder, source: train, layers: common.layers, comm: comm, limit: limit)
        let te = try FeatureExtractor.extract(encoder: net.encoder, source: test, layers: common.layers, comm: comm, limit: limit)
        guard let tr, let te else { return }
        for l in common.layers {
          let acc = Probes.knn(train: tr[l]!, test: te[l]!, k: k)
          console.say(String(format: "knn k=%d %@: %.2f%%", k, l.rawValue, acc * 100))
        }
      }
    }
  }
}
