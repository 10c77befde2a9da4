import ArgumentParser
import Dist
import Foundation
import Train

struct Sweep: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Pretrain and evaluate (linear probe, kNN, k-means) once per value of α or of the augmentation strength.",
    discussion: """
      Each point pretrains with the YAML file and flags given (pretraining options as for \
      `parallax pretrain`), the swept option set to the point's value, in OUT/point-NN-…; then \
      evaluates the frozen pooled features. OUT gets results.csv, results.md and an SVG plot. \
      Under `mpirun -np N` with --group-size G the ranks split into N/G groups that train \
      different points at once, each data-parallel over its G ranks. Run the same command again \
      to continue a stopped sweep: finished points are skipped, a stopped point resumes from \
      its latest checkpoint.

      Example: mpirun -np 2 parallax sweep alpha --config configs/ssl-short.yaml \
      --values 0,1e-5,1e-3,1e-1,10 --group-size 1 --out runs/sweep-alpha
      """,
    subcommands: [Alpha.self, Strength.self])

  struct Common: ParsableArguments {
    @Option(help: "YAML configuration of every point (flags after the sweep's own override it).") var config: String?
    @Option(help: "Comma-separated values of the swept option, e.g. 0,1e-5,1e-3,1e-1,10.") var values: String
    @Option(help: "Sweep directory (default: runs/sweep-<parameter>).") var out: String?
    @Option(help: "Ranks per group: every group trains its own points, data-parallel inside (default: all ranks, one group).")
    var groupSize: Int = 0
    @Option(help: "Linear-probe epochs per point.") var probeEpochs: Int = 30
    @Option(help: "Linear-probe peak learning rate (SGD with momentum, cosine decay, standardised features).")
    var probeLR: Float = 0.1
    @Option(help: "Evaluate on the first N samples of each split (0: all).") var evalLimit: Int = 0
    @Option(help: "Neighbours of the kNN classifier.") var knnK: Int = 20
    @Option(help: "Largest number of Lloyd iterations of k-means.") var kmeansIterations: Int = 100
    @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0
    /// Every group stops after finishing this many points in this invocation (resume tests).
    @Option(help: .hidden) var debugStopAfterPoints: Int?

    @Argument(
      parsing: .allUnrecognized,
      help: ArgumentHelp("Pretraining options of every point (`parallax pretrain --help` lists them).", valueName: "options"))
    var settings: [String] = []

    func validate() throws {
      guard groupSize >= 0 else { throw ValidationError("--group-size must be ≥ 1 (0: all ranks)") }
      guard probeLR > 0, probeLR.isFinite else { throw ValidationError("--probe-lr must be positive") }
      guard probeEpochs >= 1, evalLimit >= 0, knnK >= 1, kmeansIterations >= 1, threads >= 0 else {
        throw ValidationError("--probe-epochs, --knn-k and --kmeans-iterations must be ≥ 1; --eval-limit and --threads ≥ 0")
      }
    }

    /// The sweep's description: base configuration (YAML, then flags), values, evaluation.
    func spec(_ parameter: SweepParameter) throws -> SweepSpec {
      var base = try config.map { try PretrainConfig.load(yamlPath: $0) } ?? PretrainConfig()
      try OptionArguments.apply(settings, to: &base)
      if settings.contains(where: { $0 == "--" + parameter.option.flag || $0.hasPrefix("--" + parameter.option.flag + "=") }) {
        throw ConfigError(message: "--\(parameter.option.flag) is what the sweep sets: give its values with --values")
      }
      base.runDir = directory(parameter)
      var evaluation = SweepEvaluation()
      evaluation.probeEpochs = probeEpochs
      evaluation.probeLR = probeLR
      evaluation.limit = evalLimit
      evaluation.knnK = knnK
      evaluation.kmeansIterations = kmeansIterations
      return try SweepSpec(parameter: parameter, values: values, base: base, evaluation: evaluation)
    }

    func directory(_ parameter: SweepParameter) -> String { out ?? "runs/sweep-\(parameter.rawValue)" }

    func run(_ parameter: SweepParameter) throws {
      let spec: SweepSpec
      do { spec = try self.spec(parameter) } catch let e as ConfigError { throw ValidationError(e.message) }
      try withWorld { comm, console in
        let threads = Runtime.configureThreads(requested: threads, localSize: comm.localSize)
        var runner = SweepRunner(spec: spec, out: directory(parameter), groupSize: groupSize == 0 ? comm.size : groupSize)
        runner.stopAfterPoints = debugStopAfterPoints
        try RankLog.open(runDir: runner.out, rank: comm.rank)
        console.say(
          "sweep \(parameter.rawValue) over \(spec.values.count) point(s): \(comm.size) rank(s) in \(comm.size / runner.groupSize) group(s) of \(runner.groupSize) × \(threads) thread(s) · \(spec.base.method.rawValue) · \(spec.base.model.rawValue) · out \(runner.out)")
        let o = try runner.run(world: comm, console: console)
        let dir = runner.out
        console.say(
          "sweep: \(o.ran) point(s) run, \(o.skipped) skipped as finished; \(o.results.count) of \(spec.values.count) have results; tables in \(dir)/results.md, \(dir)/results.csv, plot \(dir)/\(parameter.rawValue).svg"
            + (o.complete ? "" : " (not complete: run the same command again to continue)"))
        if comm.rank == 0, let table = try? String(contentsOfFile: dir + "/results.md", encoding: .utf8) {
          console.say(table)
        }
      }
    }
  }

  struct Alpha: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Sweep the embedding-loss weight α (parallel-ae, parallel-dae); plotted on a log axis.")
    @OptionGroup var common: Common
    func run() throws { try common.run(.alpha) }
  }

  struct Strength: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sweep the augmentation strength (0…2).")
    @OptionGroup var common: Common
    func run() throws { try common.run(.strength) }
  }
}
