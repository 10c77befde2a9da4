import Data
import Dist
import Foundation
import Model

/// The option a sweep varies.
public enum SweepParameter: String, CaseIterable, Codable, Sendable {
  /// The embedding-loss weight α of `parallel-ae` / `parallel-dae` (orders of magnitude).
  case alpha
  /// The augmentation strength (`augment-strength`: the corruption of `dae`, the views of
  /// the parallel and contrastive methods).
  case strength

  /// The pretraining option it sets.
  public var option: ConfigOption<Float> { self == .alpha ? Options().alpha : Options().augmentStrength }
  /// The axis label of tables and plots.
  public var label: String { self == .alpha ? "α" : "augmentation strength" }
  /// α spans orders of magnitude: a log axis (α = 0 drawn as a dashed level).
  public var logAxis: Bool { self == .alpha }
}

/// How every point of a sweep is evaluated after pretraining: a linear probe, weighted kNN and
/// k-means on the frozen pooled features of the first `limit` samples of each split.
public struct SweepEvaluation: Codable, Equatable, Sendable {
  /// Logistic-regression epochs of the linear probe.
  public var probeEpochs = 30
  /// Peak learning rate of the probe (SGD, momentum 0.9, cosine, on standardised features).
  public var probeLR: Float = 0.1
  /// Samples of each split (0: all).
  public var limit = 0
  /// Neighbours of the kNN classifier.
  public var knnK = 20
  /// Largest number of Lloyd iterations (k = the number of classes).
  public var kmeansIterations = 100

  public init() {}
}

/// One sweep: the base configuration, the option it varies and the values, and the
/// evaluation. Written as `sweep.json` in the sweep directory; a rerun must describe the same
/// sweep (it then continues it).
public struct SweepSpec: Codable, Equatable, Sendable {
  public var parameter: SweepParameter
  /// The values as given (their text names the points' directories).
  public var values: [String]
  /// The pretraining configuration of every point (its run directory and the swept option
  /// are set per point).
  public var base: PretrainConfig
  public var evaluation: SweepEvaluation

  /// - Throws: `ConfigError` naming `--values` for a value that is not a number or that the
  ///   option refuses, and for a repeated value.
  public init(parameter: SweepParameter, values: String, base: PretrainConfig, evaluation: SweepEvaluation) throws {
    self.parameter = parameter
    self.base = base
    self.evaluation = evaluation
    let texts = values.split(separator: ",", omittingEmptySubsequences: false).map {
      $0.trimmingCharacters(in: .whitespaces)
    }
    guard !texts.isEmpty, !texts.contains(where: \.isEmpty) else {
      throw ConfigError(message: "--values: expected a comma-separated list of numbers (got '\(values)')")
    }
    var seen = Set<Float>()
    for t in texts {
      let v = try parameter.option.parse(t, label: "--values: \(parameter.rawValue) \(t):") as! Float
      guard seen.insert(v).inserted else { throw ConfigError(message: "--values: \(t) is listed twice") }
    }
    self.values = texts
  }

  /// The value of point `i`.
  public func value(_ i: Int) -> Float { Float(optionText: values[i])! }

  /// Point `i`'s directory under the sweep directory `out`: `point-03-alpha-0.001`.
  public func pointDirectory(_ i: Int, out: String) -> String {
    let safe = values[i].map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" }
    return (out as NSString).appendingPathComponent(String(format: "point-%02d-", i) + parameter.rawValue + "-" + String(safe))
  }

  /// Point `i`'s pretraining configuration.
  public func config(_ i: Int, out: String) -> PretrainConfig {
    var c = base
    c[parameter.option] = value(i)
    c.runDir = pointDirectory(i, out: out)
    return c
  }
}

/// What one point gave: written atomically as `result.json` in its directory once it is
/// finished (its presence is what "finished" means on resume).
public struct SweepResult: Codable, Equatable, Sendable {
  public var index: Int
  public var value: String
  public var steps: Int
  public var finalLoss: Float
  /// Test accuracy of the linear probe, the kNN classifier and k-means (Hungarian-matched),
  /// in [0, 1]; NMI and ARI of k-means.
  public var linear: Double
  public var knn: Double
  public var kmeansAccuracy: Double
  public var kmeansNMI: Double
  public var kmeansARI: Double
  public var featureDim: Int
  public var trainSamples: Int
  public var testSamples: Int
  /// Ranks of the group that trained the point.
  public var ranks: Int
  public var pretrainSeconds: Double
  public var evalSeconds: Double

  public static let fileName = "result.json"

  /// The point's result, or nil when it has none yet; a damaged file is an error naming it.
  public static func read(directory: String) throws -> SweepResult? {
    let path = (directory as NSString).appendingPathComponent(fileName)
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    do {
      return try JSONDecoder().decode(SweepResult.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
      throw ConfigError(message: "\(path): not a sweep result (\(error)); delete it to run the point again")
    }
  }

  func write(directory: String) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try e.encode(self), to: (directory as NSString).appendingPathComponent(Self.fileName))
  }
}

/// Runs a sweep over the world: the ranks split (`MPI_Comm_split`) into groups of
/// `groupSize`, group g trains points g, g + G, g + 2G, … one after the other, each
/// data-parallel over the group's ranks, and evaluates it; the group's rank 0 writes the
/// point's `result.json`. Finished points are skipped, a point whose training stopped resumes
/// from its latest checkpoint. At the end world rank 0 writes `results.csv`, `results.md` and
/// `<parameter>.svg` from every result present.
public struct SweepRunner {
  public let spec: SweepSpec
  /// The sweep directory.
  public let out: String
  public let groupSize: Int
  /// Test hook (hidden flag): every group stops after finishing this many points in this
  /// invocation, as a stopped job would.
  public var stopAfterPoints: Int?

  public init(spec: SweepSpec, out: String, groupSize: Int) {
    self.spec = spec
    self.out = out
    self.groupSize = groupSize
  }

  /// What a run of the sweep did.
  public struct Outcome {
    /// Points this invocation trained and evaluated (over all groups).
    public var ran: Int
    /// Points found finished and skipped.
    public var skipped: Int
    /// Results present at the end, in point order (world rank 0; empty elsewhere).
    public var results: [SweepResult]
    public var complete: Bool
  }

  /// Checks everything that can be checked before anything is written: the group size, and
  /// every point's configuration on a group of that size.
  public func validate(worldSize: Int) throws {
    guard groupSize >= 1, worldSize % groupSize == 0 else {
      throw ConfigError(message: "--group-size \(groupSize) must divide the \(worldSize) rank(s)")
    }
    for i in spec.values.indices {
      do { try spec.config(i, out: out).validate(worldSize: groupSize) } catch let e as ConfigError {
        throw ConfigError(message: "point \(spec.parameter.rawValue) = \(spec.values[i]): \(e.message)")
      }
    }
  }

  /// Runs (or continues) the sweep on every rank of `world`.
  public func run(world: Communicator, console: Console) throws -> Outcome {
    try validate(worldSize: world.size)
    try agreeOnSpec(world: world)
    let groups = world.size / groupSize
    let color = world.rank / groupSize
    let group = try world.split(color: color, key: world.rank)
    defer { try? group.free() }
    // Each group's rank 0 prints its points' lines.
    let groupConsole = Console(isRoot: group.rank == 0)
    let mine = spec.values.indices.filter { $0 % groups == color }
    var ran = 0
    var skipped = 0
    var stopped = false
    for i in mine {
      let dir = spec.pointDirectory(i, out: out)
      let name = "point \(i + 1)/\(spec.values.count) (\(spec.parameter.rawValue) = \(spec.values[i]))"
      // Rank 0 of the group looks; the group agrees on what it saw.
      var finished: Int64 = 0
      if group.rank == 0 { finished = try SweepResult.read(directory: dir) == nil ? 0 : 1 }
      finished = try group.allReduce(finished, op: .max)
      if finished != 0 {
        groupConsole.say("sweep: \(name) finished before, skipped")
        skipped += 1
        continue
      }
      if let n = stopAfterPoints, ran >= n {
        stopped = true
        break
      }
      if try group.allReduce(Int64(StopSignal.pending), op: .max) != 0 {
        stopped = true
        break
      }
      groupConsole.say("sweep: \(name) on \(group.size) rank(s) in \(dir)")
      guard let result = try runPoint(i, group: group, console: groupConsole) else {
        groupConsole.say("sweep: \(name) stopped; run the same command again to continue it")
        stopped = true
        break
      }
      ran += 1
      groupConsole.say(
        String(
          format: "sweep: %@: loss %.4f, linear %.2f%%, kNN %.2f%%, k-means %.2f%% (NMI %.4f, ARI %.4f)", name,
          result.finalLoss, 100 * result.linear, 100 * result.knn, 100 * result.kmeansAccuracy, result.kmeansNMI,
          result.kmeansARI))
    }
    // Every group is done (or stopped): rank 0 gathers what is on disk.
    let ranTotal = try world.allReduce(Int64(ran), op: .sum) / Int64(groupSize)
    let skippedTotal = try world.allReduce(Int64(skipped), op: .sum) / Int64(groupSize)
    _ = try world.allReduce(Int64(stopped ? 1 : 0), op: .max)
    var results: [SweepResult] = []
    var failure = ""
    if world.rank == 0 {
      do {
        results = try spec.values.indices.compactMap { try SweepResult.read(directory: spec.pointDirectory($0, out: out)) }
        try SweepTables.write(spec: spec, results: results, out: out)
      } catch { failure = "\(error)" }
    }
    failure = try world.broadcast(string: failure, from: 0)
    guard failure.isEmpty else { throw TrainError(failure) }
    let complete = try world.allReduce(Int64(results.count), op: .max) == Int64(spec.values.count)
    return Outcome(ran: Int(ranTotal), skipped: Int(skippedTotal), results: results, complete: complete)
  }

  /// World rank 0 writes `sweep.json`, or checks that the one there describes this sweep;
  /// every rank gets the same verdict.
  func agreeOnSpec(world: Communicator) throws {
    var failure = ""
    if world.rank == 0 {
      let path = (out as NSString).appendingPathComponent("sweep.json")
      do {
        if FileManager.default.fileExists(atPath: path) {
          let old: SweepSpec
          do { old = try JSONDecoder().decode(SweepSpec.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw ConfigError(message: "\(path): not a sweep description (\(error))")
          }
          guard old == spec else {
            throw ConfigError(message: "\(path) describes another sweep (\(Self.difference(old, spec))); nothing was written (use another --out, or the same settings to continue it)")
          }
        } else {
          try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
          let e = JSONEncoder()
          e.outputFormatting = [.prettyPrinted, .sortedKeys]
          try AtomicFile.write(try e.encode(spec), to: path)
        }
      } catch { failure = "\(error)" }
    }
    failure = try world.broadcast(string: failure, from: 0)
    guard failure.isEmpty else { throw ConfigError(message: failure) }
  }

  /// What differs between two sweeps, for the refusal message.
  static func difference(_ a: SweepSpec, _ b: SweepSpec) -> String {
    if a.parameter != b.parameter { return "parameter \(a.parameter.rawValue) there, \(b.parameter.rawValue) here" }
    if a.values != b.values { return "values \(a.values.joined(separator: ",")) there, \(b.values.joined(separator: ",")) here" }
    if a.evaluation != b.evaluation { return "another evaluation" }
    let keys = PretrainConfig.allOptions.filter { $0.key != "runDir" && !$0.isEqual(a.base.value($0), b.base.value($0)) }
    return "options " + keys.map { "\($0.key) \(a.base.value($0).optionText) there, \(b.base.value($0).optionText) here" }.joined(separator: "; ")
  }

  /// Pretrains (or resumes) and evaluates point `i` on `group`; nil when training stopped
  /// early (a signal): its checkpoint is there for the next run.
  func runPoint(_ i: Int, group: Communicator, console: Console) throws -> SweepResult? {
    let config = spec.config(i, out: out)
    try RankLog.open(runDir: config.runDir, rank: group.rank)
    let latest = (config.runDir as NSString).appendingPathComponent("latest")
    var exists: Int64 = 0
    if group.rank == 0 { exists = FileManager.default.fileExists(atPath: latest) ? 1 : 0 }
    let source = try group.allReduce(exists, op: .max) != 0 ? try ResumeSource.find("latest", config: config, comm: group) : nil
    let trainer = try Pretrainer(config: config, comm: group, console: console)
    if let source {
      try trainer.resume(source)
      console.say("sweep: resumed \(config.runDir) at step \(trainer.step)")
    }
    let s: PretrainSummary
    do {
      defer {
        trainer.stopSyncThreads()
        trainer.closeData()
      }
      s = try trainer.run()
    }
    if s.stopReason != nil { return nil }
    if group.rank == 0 {
      do { try RunRecord.write(summary: s, trainer: trainer, worldSize: group.size, nodes: group.nodeCount, threads: 0) } catch {
        console.say("warning: \(error); run.json not written")
      }
    }
    let t0 = now()
    let m = try SweepEvaluation.evaluate(config: config, encoder: trainer.method.encoder, settings: spec.evaluation, comm: group)
    let result = SweepResult(
      index: i, value: spec.values[i], steps: trainer.step, finalLoss: finalLoss(s, runDir: config.runDir),
      linear: m.linear, knn: m.knn, kmeansAccuracy: m.kmeansAccuracy, kmeansNMI: m.nmi, kmeansARI: m.ari,
      featureDim: m.dim, trainSamples: m.train, testSamples: m.test, ranks: group.size, pretrainSeconds: s.seconds,
      evalSeconds: now() - t0)
    var failure = ""
    if group.rank == 0 {
      do { try result.write(directory: config.runDir) } catch { failure = "\(error)" }
    }
    failure = try group.broadcast(string: failure, from: 0)
    guard failure.isEmpty else { throw TrainError(failure) }
    return result
  }

  /// The last logged loss: this run's, or for a point whose training had already finished
  /// before a resume, the last line of its `log.jsonl`.
  func finalLoss(_ s: PretrainSummary, runDir: String) -> Float {
    if s.finalLoss.isFinite { return s.finalLoss }
    guard let text = try? String(contentsOfFile: runDir + "/log.jsonl", encoding: .utf8),
      let line = text.split(separator: "\n").last,
      let json = try? JSONSerialization.jsonObject(with: Foundation.Data(line.utf8)) as? [String: Any],
      let loss = json["loss"] as? Double
    else { return .nan }
    return Float(loss)
  }
}

extension SweepEvaluation {
  /// The figures of one point.
  public struct Metrics {
    public var linear, knn, kmeansAccuracy, nmi, ari: Double
    public var dim, train, test: Int
  }

  /// Linear probe, kNN and k-means of `encoder` on the pooled features of the first `limit`
  /// samples of each split: features are extracted split over the ranks of `comm`, k-means
  /// runs over the ranks' shares (sums all-reduced), and rank 0 fits the probe and the kNN
  /// classifier; the result is broadcast so every rank returns the same.
  public static func evaluate(
    config: PretrainConfig, encoder: any Encoder, settings: SweepEvaluation, comm: Communicator
  ) throws -> Metrics {
    let data = try Datasets.open(config)
    let train = try data.evaluation(.train)
    let test = try data.evaluation(.test)
    let limit = settings.limit > 0 ? settings.limit : nil
    let slot = 0
    let classes = train.labelSlots[slot].classCount
    let trainShare = try FeatureExtractor.share(
      encoder: encoder, eval: train, layers: [.pooled], comm: comm, batch: data.evalBatch, limit: limit)
    let testShare = try FeatureExtractor.share(
      encoder: encoder, eval: test, layers: [.pooled], comm: comm, batch: data.evalBatch, limit: limit)
    let d = testShare.dims[.pooled]!
    let clustering = try KMeans.fit(
      local: testShare.values[.pooled]!, d: d, offset: testShare.range.lowerBound, total: testShare.total, k: classes,
      iterations: settings.kmeansIterations, seed: config.seed, comm: comm)
    func gathered(_ share: (range: Range<Int>, per: Int, total: Int, dims: [FeatureLayer: Int], values: [FeatureLayer: [Float]]), width: Int, _ local: [Float]) throws -> [Float]? {
      try FeatureExtractor.gatherShares(
        local + [Float](repeating: 0, count: share.per * width - local.count), rowWidth: width, per: share.per,
        total: share.total, comm: comm)
    }
    let trainRows = try gathered(trainShare, width: d, trainShare.values[.pooled]!)
    let testRows = try gathered(testShare, width: d, testShare.values[.pooled]!)
    let clusters = try gathered(testShare, width: 1, clustering.assignments.map(Float.init))
    var figures = [Double](repeating: 0, count: 5)
    if comm.rank == 0, let trainRows, let testRows, let clusters {
      let tr = FeatureSet(dim: d, values: trainRows, labels: train.labels(indices: 0..<trainShare.total, slot: slot))
      let te = FeatureSet(dim: d, values: testRows, labels: test.labels(indices: 0..<testShare.total, slot: slot))
      let assigned = clusters.map { Int($0) }
      figures = [
        try Probes.linear(
          train: tr, test: te, classes: classes, epochs: settings.probeEpochs, batch: min(256, max(1, tr.count)),
          lr: settings.probeLR),
        Probes.knn(train: tr, test: te, k: settings.knnK, classes: classes),
        ClusteringMetrics.matchedAccuracy(labels: te.labels, clusters: assigned),
        ClusteringMetrics.nmi(labels: te.labels, clusters: assigned),
        ClusteringMetrics.ari(labels: te.labels, clusters: assigned),
      ]
    }
    // Every rank returns rank 0's figures (as text: "\(Double)" round-trips exactly).
    let text = try comm.broadcast(string: figures.map { "\($0)" }.joined(separator: ","), from: 0)
    figures = text.split(separator: ",").compactMap { Double($0) }
    return Metrics(
      linear: figures[0], knn: figures[1], kmeansAccuracy: figures[2], nmi: figures[3], ari: figures[4], dim: d,
      train: trainShare.total, test: testShare.total)
  }
}

/// The sweep's tables and plot, written atomically by world rank 0.
public enum SweepTables {
  /// `results.csv`: one row per finished point, in point order.
  public static func csv(spec: SweepSpec, results: [SweepResult]) -> String {
    var s =
      "\(spec.parameter.rawValue),steps,final_loss,linear_acc,knn_acc,kmeans_acc,kmeans_nmi,kmeans_ari,feature_dim,train_samples,test_samples,ranks,pretrain_s,eval_s\n"
    for r in results {
      s += [
        r.value, "\(r.steps)", String(format: "%.6f", r.finalLoss), String(format: "%.6f", r.linear),
        String(format: "%.6f", r.knn), String(format: "%.6f", r.kmeansAccuracy), String(format: "%.6f", r.kmeansNMI),
        String(format: "%.6f", r.kmeansARI), "\(r.featureDim)", "\(r.trainSamples)", "\(r.testSamples)", "\(r.ranks)",
        String(format: "%.1f", r.pretrainSeconds), String(format: "%.1f", r.evalSeconds),
      ].joined(separator: ",") + "\n"
    }
    return s
  }

  /// `results.md`: the same as a Markdown table, accuracies in %.
  public static func markdown(spec: SweepSpec, results: [SweepResult]) -> String {
    let c = spec.base
    var s = "| \(spec.parameter.label) | final loss | linear | kNN (k = \(spec.evaluation.knnK)) | k-means accuracy | k-means NMI | k-means ARI | pretrain s | ranks |\n"
    s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for r in results {
      s += String(
        format: "| %@ | %.4f | %.2f%% | %.2f%% | %.2f%% | %.4f | %.4f | %.1f | %d |\n", r.value, r.finalLoss,
        100 * r.linear, 100 * r.knn, 100 * r.kmeansAccuracy, r.kmeansNMI, r.kmeansARI, r.pretrainSeconds, r.ranks)
    }
    let missing = spec.values.count - results.count
    s += "\n\(c.method.rawValue) on \(c.model.rawValue), \(c.data.rawValue); \(results.first.map { "\($0.steps) steps per point, " } ?? "")global batch \(c.globalBatch); features: pooled (\(results.first?.featureDim ?? 0)-d) of the first \(results.first?.trainSamples ?? 0) train / \(results.first?.testSamples ?? 0) test samples; linear probe \(spec.evaluation.probeEpochs) epochs at lr \(spec.evaluation.probeLR)."
    if missing > 0 { s += " \(missing) of \(spec.values.count) points not finished yet." }
    return s + "\n"
  }

  /// The plot: the three accuracies against the parameter (left) and k-means NMI / ARI
  /// (right). α > 0 on a log axis; α = 0 is drawn as a dashed level of each series' colour.
  public static func svg(spec: SweepSpec, results: [SweepResult]) -> String {
    let x = { (r: SweepResult) in Double(Float(optionText: r.value)!) }
    func plot(_ title: String, _ yLabel: String, _ series: [(String, (SweepResult) -> Double)]) -> SVGPlot {
      let log = spec.parameter.logAxis
      let onAxis = results.filter { !log || x($0) > 0 }
      let lo = onAxis.map(x).min() ?? 0
      let hi = onAxis.map(x).max() ?? 1
      var all: [SVGPlot.Series] = []
      for (j, (name, f)) in series.enumerated() {
        let color = SVGPlot.palette[j % SVGPlot.palette.count]
        all.append(SVGPlot.Series(name, onAxis.map { (x($0), f($0)) }, color: color, markers: true))
        if log, let zero = results.first(where: { x($0) == 0 }) {
          all.append(SVGPlot.Series("\(name), α = 0", [(lo, f(zero)), (hi, f(zero))], color: color, dashed: true))
        }
      }
      var p = SVGPlot(title: title, xLabel: spec.parameter.label + (log ? " (log scale)" : ""), yLabel: yLabel, series: all)
      p.xScale = log ? .log10 : .linear
      return p
    }
    let c = spec.base
    let accuracy = plot(
      "\(c.method.rawValue) \(c.model.rawValue): test accuracy", "accuracy, %",
      [("linear", { 100 * $0.linear }), ("kNN", { 100 * $0.knn }), ("k-means", { 100 * $0.kmeansAccuracy })])
    let clustering = plot("k-means", "score", [("NMI", { $0.kmeansNMI }), ("ARI", { $0.kmeansARI })])
    return SVGPlot.row([accuracy, clustering])
  }

  static func write(spec: SweepSpec, results: [SweepResult], out: String) throws {
    func path(_ name: String) -> String { (out as NSString).appendingPathComponent(name) }
    try AtomicFile.write(Foundation.Data(csv(spec: spec, results: results).utf8), to: path("results.csv"))
    try AtomicFile.write(Foundation.Data(markdown(spec: spec, results: results).utf8), to: path("results.md"))
    try AtomicFile.write(Foundation.Data(svg(spec: spec, results: results).utf8), to: path("\(spec.parameter.rawValue).svg"))
  }
}
