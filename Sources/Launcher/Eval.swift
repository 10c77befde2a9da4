import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

struct Eval: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Evaluate a checkpoint's frozen encoder (Fashion-MNIST test, or the held-out clips of its audio data).",
    discussion: """
      Audio checkpoints (data spoken-digits, audio-manifest, audio-folder) are evaluated per label slot
      (--labels, default word language voice): linear probes fit on the train split and score the
      20% held-out split; few-shot tasks draw from all clips.
      """,
    subcommands: [Linear.self, KNN.self, FewShot.self])

  struct Common: ParsableArguments {
    @Option(help: "Checkpoint directory (e.g. runs/simclr/latest).") var checkpoint: String
    @Option(help: "Features: pooled, pre-pool or both (default: both for images, pooled for audio).") var layer: String?
    @Option(help: "Use only the first N images of each split (0: all).") var limit: Int = 0
    @Option(help: "Directory of the Fashion-MNIST IDX files or the audio corpus (default: the checkpoint's).") var dataDir: String?
    @Option(parsing: .upToNextOption, help: "Audio: label slots to evaluate (default: word language voice).") var labels: [String] = []
    @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0

    func validate() throws {
      if let layer, !["pooled", "pre-pool", "both"].contains(layer) {
        throw ValidationError("--layer must be pooled, pre-pool or both (got '\(layer)')")
      }
      guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
    }

    /// The requested layers (`audio`: pooled unless asked otherwise).
    func layers(audio: Bool = false) -> [FeatureLayer] {
      let l = layer ?? (audio ? "pooled" : "both")
      return l == "both" ? FeatureLayer.allCases : [FeatureLayer(rawValue: l)!]
    }
    var layers: [FeatureLayer] { layers() }

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
        if config.isAudio {
          let (train, test) = try AudioData.splits(config)
          let slots = try AudioEvaluation.slots(train, requested: common.labels)
          for l in common.layers(audio: true) {
            guard let r = try ProbeReport.audioProbe(
              encoder: net.encoder, config: config, train: train, test: test, slots: slots, layer: l, comm: comm,
              epochs: epochs)
            else { continue }
            for (s, acc) in zip(slots, r.accuracies) {
              console.say(String(
                format: "linear %@ %@ (%@) %@: %.2f%% (%d-d, %d train / %d test clips, %.1f s)", config.method.rawValue,
                config.model.rawValue, l.rawValue, s.name, acc * 100, r.dim, train.count, test.count, r.seconds))
            }
          }
          return
        }
        let (train, test) = try ProbeReport.splits(config)
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
        guard !config.isAudio else { throw ValidationError("knn: use `eval linear` or `eval fewshot` on audio checkpoints") }
        let (train, test) = try ProbeReport.splits(config)
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

  struct FewShot: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "fewshot",
      abstract: "Few-shot N-way K-shot tasks (nearest centroid on frozen features): mean accuracy ± 95% CI.",
      discussion: """
        Audio: every clip of the checkpoint's data, per label slot (ways capped at the slot's class count).
        Images: the Fashion-MNIST test split. Example:
        parallax eval fewshot --checkpoint runs/clmr/latest --ways 5 --shots 1 --tasks 1000
        """)
    @OptionGroup var common: Common
    @Option(help: "Classes per task (N).") var ways: Int = 5
    @Option(help: "Support examples per class (K).") var shots: Int = 1
    @Option(help: "Query examples per class.") var queries: Int = 15
    @Option(help: "Tasks.") var tasks: Int = 1000
    @Option(help: "Task seed.") var taskSeed: UInt64 = 0
    @Flag(help: "L2-normalise features before the centroids.") var normalize = false

    func validate() throws {
      guard ways >= 2, shots >= 1, queries >= 1, tasks >= 1 else {
        throw ValidationError("--ways ≥ 2; --shots, --queries, --tasks ≥ 1")
      }
    }

    func evaluator(classes: Int) -> FewShotEvaluator {
      FewShotEvaluator(
        ways: min(ways, classes), shots: shots, queries: queries, tasks: tasks, seed: taskSeed, normalize: normalize)
    }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (config, net) = try common.load()
        if config.isAudio {
          let all = try AudioData.open(config)
          let slots = try AudioEvaluation.slots(all, requested: common.labels)
          for l in common.layers(audio: true) {
            let t0 = now()
            let fs = try FeatureExtractor.extract(
              encoder: net.encoder, audio: all, length: config.resolvedAudioLength, mel: AudioData.melFrontEnd(config),
              layers: [l], comm: comm)
            guard let f = fs?[l] else { continue }
            for s in slots {
              let e = evaluator(classes: all.classNames[s.slot].count)
              let r = try e.evaluate(AudioEvaluation.labelled(f, all, slot: s.slot))
              console.say(String(
                format: "fewshot %@ %@ (%@) %@: %d-way %d-shot %@ (%d-d, %d clips, %.1f s)", config.method.rawValue, config.model.rawValue,
                l.rawValue, s.name, e.ways, shots, r.description, f.dim, all.count, now() - t0))
            }
          }
          return
        }
        let test = try FashionMNIST.shard(split: .test, directory: config.dataDir)
        let fs = try FeatureExtractor.extract(
          encoder: net.encoder, source: test, layers: common.layers, comm: comm,
          limit: common.limit > 0 ? common.limit : nil)
        guard let fs else { return }
        for l in common.layers {
          let r = try evaluator(classes: 10).evaluate(fs[l]!)
          console.say(String(format: "fewshot %@ (%@): %d-way %d-shot %@", config.model.rawValue, l.rawValue, min(ways, 10), shots, r.description))
        }
      }
    }
  }
}
