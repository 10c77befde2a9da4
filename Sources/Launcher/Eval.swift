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
    subcommands: [Linear.self, KNN.self, FewShot.self, KMeansCommand.self, Amortised.self])

  struct Common: ParsableArguments {
    @Option(help: "Checkpoint directory (e.g. runs/simclr/latest).") var checkpoint: String
    @Option(help: "Features: pooled, pre-pool or both (default: both for images, pooled for audio).") var layer: String?
    @Option(help: "Use only the first N samples of each split (0: all).") var limit: Int = 0
    @Option(help: "Directory of the Fashion-MNIST IDX files or the audio corpus (default: the checkpoint's).") var dataDir: String?
    @Option(
      parsing: .upToNextOption,
      help: "Label slots to evaluate (default: word language voice where the data has them, else every slot: class for Fashion-MNIST).")
    var labels: [String] = []
    @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0

    func validate() throws {
      if let layer, !["pooled", "pre-pool", "both"].contains(layer) {
        throw ValidationError("--layer must be pooled, pre-pool or both (got '\(layer)')")
      }
      guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
    }

    /// The requested layers, or the dataset's default ones.
    func layers(_ data: SSLDataset) -> [FeatureLayer] {
      switch layer {
      case "both": FeatureLayer.allCases
      case let l?: FeatureLayer(rawValue: l).map { [$0] } ?? data.probeLayers
      case nil: data.probeLayers
      }
    }

    var sampleLimit: Int? { limit > 0 ? limit : nil }

    /// Loads the checkpoint into a fresh network (verifying its hashes) and opens its data.
    func load() throws -> (PretrainConfig, SSLMethod, SSLDataset) {
      let ck = try Checkpoint.load(checkpoint)
      var config = ck.state.config
      if let d = dataDir { config.dataDir = d }
      let net = try Methods.make(config, collective: LocalCollective())
      try Checkpoint.restore(net.arena, from: ck.model, path: checkpoint + "/model.safetensors")
      return (config, net, try Datasets.open(config))
    }
  }

  struct Linear: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Linear probe (logistic regression on standardised features).",
      discussion: """
        With --holdout N the probe's own settings are chosen without the test split: every
        combination of the --epochs, --lr and --weight-decay values is fit on the training
        features minus their last N samples and scored on those N; the best is refit on all
        training features and scored once on the test split. Several values of a setting
        need --holdout.
        """)
    @OptionGroup var common: Common
    @Option(parsing: .upToNextOption, help: "Logistic-regression epochs.") var epochs: [Int] = [30]
    @Option(parsing: .upToNextOption, help: "Peak learning rate of the probe's SGD (momentum 0.9, cosine to 0).")
    var lr: [Float] = [Probes.defaultLR]
    @Option(parsing: .upToNextOption, help: "Weight decay of the probe.")
    var weightDecay: [Float] = [Probes.defaultWeightDecay]
    @Option(help: "Choose the settings on the last N training samples (0: no sweep).") var holdout: Int = 0

    func validate() throws {
      for e in epochs where e <= 0 { throw ValidationError("--epochs must be positive (got \(e))") }
      for l in lr where !(l > 0 && l.isFinite) { throw ValidationError("--lr must be a positive number (got \(l))") }
      for w in weightDecay where !(w >= 0 && w.isFinite) {
        throw ValidationError("--weight-decay must be zero or positive (got \(w))")
      }
      guard !epochs.isEmpty, !lr.isEmpty, !weightDecay.isEmpty else {
        throw ValidationError("--epochs, --lr and --weight-decay each need a value")
      }
      guard holdout >= 0 else { throw ValidationError("--holdout must be ≥ 0 (got \(holdout))") }
      if holdout == 0, epochs.count > 1 || lr.count > 1 || weightDecay.count > 1 {
        throw ValidationError(
          "several values of --epochs, --lr or --weight-decay need --holdout N: the test split never chooses the probe's settings")
      }
    }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (config, net, data) = try common.load()
        let train = try data.evaluation(.train)
        let test = try data.evaluation(.test)
        let slots = try ProbeReport.slots(train.labelSlots, requested: common.labels)
        let name = "\(config.method) \(config.model)"
        let nTrain = min(train.count, common.sampleLimit ?? train.count)
        let nTest = min(test.count, common.sampleLimit ?? test.count)
        if holdout > 0 {
          guard holdout < nTrain else {
            throw ConfigError(message: "--holdout \(holdout) must be smaller than the \(nTrain) training samples")
          }
          try sweep(name, encoder: net.encoder, train: train, test: test, layers: common.layers(data), slots: slots,
                    comm: comm, batch: data.evalBatch, console: console)
          return
        }
        let rows = try ProbeReport.probe(
          name, encoder: net.encoder, train: train, test: test,
          layers: common.layers(data), slots: slots, comm: comm, epochs: epochs[0], batch: data.evalBatch,
          limit: common.sampleLimit, lr: lr[0], weightDecay: weightDecay[0])
        let counts = "\(nTrain) train / \(nTest) test samples"
        for r in rows {
          for (s, acc) in zip(slots, r.accuracies) {
            console.say(String(
              format: "linear %@ %@: %.2f%% (%d-d, %@, %.1f s)", r.name, s.name, acc * 100, r.dim, counts, r.seconds))
          }
        }
      }
    }

    /// The --holdout sweep: one validation line per setting, then the chosen one's test accuracy.
    func sweep(
      _ name: String, encoder: any Encoder, train: EvalSource, test: EvalSource, layers: [FeatureLayer],
      slots: [(name: String, slot: Int)], comm: Communicator, batch: Int, console: Console
    ) throws {
      guard let (tr, te) = try ProbeReport.features(
        encoder: encoder, train: train, test: test, layers: layers, comm: comm, batch: batch, limit: common.sampleLimit)
      else { return }
      let settings = ProbeSweep.grid(epochs: epochs, lr: lr, weightDecay: weightDecay)
      for l in layers {
        for s in slots {
          let trainSet = ProbeReport.labelled(tr[l]!, train, slot: s.slot)
          let classes = train.labelSlots[s.slot].classCount
          let fitCount = trainSet.count - holdout
          let (accs, best) = try ProbeSweep.validate(
            train: trainSet, holdout: holdout, classes: classes, settings: settings
          ) { setting, acc in
            console.say(String(
              format: "validation %@ (%@) %@ [%@]: %.2f%% (fit %d, validate %d)", name, l.rawValue, s.name,
              setting.description, acc * 100, fitCount, holdout))
          }
          let chosen = settings[best]
          let t0 = Date()
          let acc = try ProbeReport.linear(
            train: tr[l]!, of: train, test: te[l]!, of: test, slot: s.slot, epochs: chosen.epochs, lr: chosen.lr,
            weightDecay: chosen.weightDecay)
          console.say(String(
            format: "linear %@ (%@) %@: %.2f%% with [%@] (validation %.2f%%; %d-d, %d train / %d test samples, %.1f s)",
            name, l.rawValue, s.name, acc * 100, chosen.description, accs[best] * 100, trainSet.dim, trainSet.count,
            te[l]!.count, Date().timeIntervalSince(t0)))
        }
      }
    }
  }

  struct KNN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "knn", abstract: "Weighted k-NN on cosine similarity.")
    @OptionGroup var common: Common
    @Option(help: "Neighbours.") var k: Int = 20

    func validate() throws {
      guard k >= 1 else { throw ValidationError("--k must be ≥ 1 (got \(k))") }
    }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (_, net, data) = try common.load()
        let train = try data.evaluation(.train)
        let test = try data.evaluation(.test)
        let slots = try ProbeReport.slots(train.labelSlots, requested: common.labels)
        let layers = common.layers(data)
        guard let (tr, te) = try ProbeReport.features(
          encoder: net.encoder, train: train, test: test, layers: layers, comm: comm, batch: data.evalBatch,
          limit: common.sampleLimit)
        else { return }
        for l in layers {
          for s in slots {
            let acc = Probes.knn(
              train: ProbeReport.labelled(tr[l]!, train, slot: s.slot), test: ProbeReport.labelled(te[l]!, test, slot: s.slot),
              k: k, classes: train.labelSlots[s.slot].classCount)
            console.say(String(format: "knn k=%d %@ %@: %.2f%%", k, l.rawValue, s.name, acc * 100))
          }
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
        let (config, net, data) = try common.load()
        let eval = try data.evaluation(data.fewShotSplit)
        let slots = try ProbeReport.slots(eval.labelSlots, requested: common.labels)
        let t0 = now()
        let layers = common.layers(data)
        guard let fs = try FeatureExtractor.extract(
          encoder: net.encoder, eval: eval, layers: layers, comm: comm, batch: data.evalBatch, limit: common.sampleLimit)
        else { return }
        for l in layers {
          let f = fs[l]!
          for s in slots {
            let e = evaluator(classes: eval.labelSlots[s.slot].classCount)
            let r = try e.evaluate(ProbeReport.labelled(f, eval, slot: s.slot))
            console.say(String(
              format: "fewshot %@ %@ (%@) %@: %d-way %d-shot %@ (%d-d, %d samples, %.1f s)", config.method.rawValue,
              config.model.rawValue, l.rawValue, s.name, e.ways, shots, r.description, f.dim, f.count, now() - t0))
          }
        }
      }
    }
  }

  struct KMeansCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "kmeans",
      abstract: "k-means on frozen test-split features (k-means++, Lloyd; split over the ranks): NMI, ARI, matched accuracy.",
      discussion: "Example: mpirun -np 2 parallax eval kmeans --checkpoint runs/ae/latest --layer pooled")
    @OptionGroup var common: Common
    @Option(help: "Clusters (default: the slot's number of classes).") var k: Int?
    @Option(help: "Largest number of Lloyd iterations.") var iterations: Int = 100
    @Option(help: "Seed of the k-means++ draws.") var seed: UInt64 = 0

    func validate() throws {
      if let k, k < 1 { throw ValidationError("--k must be ≥ 1 (got \(k))") }
      guard iterations >= 1 else { throw ValidationError("--iterations must be ≥ 1") }
    }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: common.threads, localSize: comm.localSize)
        let (_, net, data) = try common.load()
        let test = try data.evaluation(.test)
        let slots = try ProbeReport.slots(test.labelSlots, requested: common.labels)
        let layers = common.layers(data)
        let mine = try FeatureExtractor.share(
          encoder: net.encoder, eval: test, layers: layers, comm: comm, batch: data.evalBatch, limit: common.sampleLimit)
        for l in layers {
          for s in slots {
            let t0 = now()
            let k = self.k ?? test.labelSlots[s.slot].classCount
            let r = try KMeans.fit(
              local: mine.values[l]!, d: mine.dims[l]!, offset: mine.range.lowerBound, total: mine.total, k: k,
              iterations: iterations, seed: seed, comm: comm)
            // Rank 0 scores the gathered assignments against the labels.
            var local = r.assignments.map(Float.init)
            local += [Float](repeating: 0, count: mine.per - local.count)
            guard let all = try FeatureExtractor.gatherShares(local, rowWidth: 1, per: mine.per, total: mine.total, comm: comm)
            else { continue }
            let clusters = all.map { Int($0) }
            let labels = test.labels(indices: 0..<mine.total, slot: s.slot)
            console.say(String(
              format: "kmeans k=%d %@ %@: NMI %.4f, ARI %.4f, matched accuracy %.2f%% (%d-d, %d samples, %d iterations, %.1f s)",
              k, l.rawValue, s.name, ClusteringMetrics.nmi(labels: labels, clusters: clusters),
              ClusteringMetrics.ari(labels: labels, clusters: clusters),
              100 * ClusteringMetrics.matchedAccuracy(labels: labels, clusters: clusters), mine.dims[l]!, mine.total,
              r.iterations, now() - t0))
          }
        }
      }
    }
  }
}
