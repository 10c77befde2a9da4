import ArgumentParser
import Dist
import Foundation
import Model
import Train

/// `parallax mtl`: supervised multi-task learning (`--method supervised`) with any `--mtl`
/// balancing, trained by the pretraining loop (so `mpirun`, checkpoints and resume work as
/// for `pretrain`), then scored per task on the test split, with Δm % against single-task
/// baselines.
struct MTL: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mtl",
    abstract: "Supervised multi-task learning: shared encoder, one linear head per task, per-task test accuracy and Δm %.",
    discussion: """
      Trains --method supervised on --data multi-fashion (tasks left, right) or spoken-digits \
      (word, language, voice, gender) with the --mtl balancing, then writes RUN_DIR/mtl.json \
      (per-task test accuracy, seconds per step, Δm % when --baselines is given).

      --single-task trains one model per task instead (the same options, --tasks T --mtl ew, \
      run directories RUN_DIR/T) and writes RUN_DIR/baselines.json for --baselines.

      Δm % (LibMTL): (1/T) Σₜ (−1)^lₜ (Mₜ − Mₜ,single) / Mₜ,single × 100, lₜ = 0 for accuracy \
      (higher is better).

      Pretraining options (--name value), as for `parallax pretrain`:

      """ + OptionArguments.helpText())

  @Option(help: "YAML configuration file (flags override it).") var config: String?
  @Flag(help: "Train a single-task baseline per task and write RUN_DIR/baselines.json.") var singleTask = false
  @Option(help: "A baselines.json written by --single-task: report Δm % against it.") var baselines: String?
  @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0

  @Argument(
    parsing: .allUnrecognized,
    help: ArgumentHelp("Pretraining options (`--name value` or `--name=value`).", valueName: "options"))
  var settings: [String] = []

  func resolved() throws -> PretrainConfig {
    var c = try config.map { try PretrainConfig.load(yamlPath: $0) } ?? PretrainConfig()
    try OptionArguments.apply(settings, to: &c)
    if c.method != .supervised {
      if settings.contains(where: { $0 == "--method" || $0.hasPrefix("--method=") }) {
        throw ConfigError(message: "--method: parallax mtl trains --method supervised (got \(c.method))")
      }
      try OptionArguments.apply(["--method", Method.supervised.rawValue], to: &c)
    }
    return c
  }

  func validate() throws {
    do { try resolved().validate() } catch let e as ConfigError {
      throw ValidationError(e.message)
    }
    if threads < 0 { throw ValidationError("--threads must be ≥ 0") }
    if singleTask && baselines != nil { throw ValidationError("--single-task trains the baselines; drop --baselines") }
  }

  func run() throws {
    let c = try resolved()
    if c.stallTimeout > 0 || c.syncProgress == .thread {
      _ = try? Communicator.world(threadLevel: .multiple)
    }
    // Read before training, so a bad file stops the run before it starts.
    let reference = try baselines.map { try MTLResults.readBaselines($0) }
    try withWorld { comm, console in
      try RankLog.open(runDir: c.runDir, rank: comm.rank)
      let threads = Runtime.configureThreads(requested: threads, localSize: comm.localSize)
      if singleTask {
        let tasks = try taskNames(c)
        var single: [String: Double] = [:]
        for t in tasks {
          var ct = c
          try OptionArguments.apply(["--tasks", t, "--mtl", "ew", "--run-dir", c.runDir + "/" + t], to: &ct)
          let r = try train(ct, comm: comm, console: console, threads: threads)
          single[t] = r.accuracy[0]
        }
        if comm.rank == 0 {
          try MTLResults.writeBaselines(single, tasks: tasks, to: c.runDir + "/baselines.json")
          console.say("single-task baselines: " + tasks.map { String(format: "%@ %.2f %%", $0, 100 * single[$0]!) }.joined(separator: " · ") + " → \(c.runDir)/baselines.json")
        }
        return
      }
      let r = try train(c, comm: comm, console: console, threads: threads)
      var delta: Double?
      if let reference {
        delta = try MTLResults.deltaM(tasks: r.tasks, accuracy: r.accuracy, single: reference, path: baselines!)
      }
      if comm.rank == 0 {
        try MTLResults.write(r, deltaM: delta, config: c, to: c.runDir + "/mtl.json")
        console.say(
          "mtl \(c.mtl): " + zip(r.tasks, r.accuracy).map { String(format: "%@ %.2f %%", $0, 100 * $1) }.joined(separator: " · ")
            + (delta.map { String(format: " · Δm %+.2f %%", $0) } ?? "")
            + String(format: " · %.1f ms/step", 1000 * r.secondsPerStep) + " → \(c.runDir)/mtl.json")
      }
    }
  }

  /// The tasks a configuration trains (`--tasks`, or every label slot of the data).
  func taskNames(_ c: PretrainConfig) throws -> [String] {
    if !c.tasks.isEmpty { return c.tasks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
    return try Datasets.open(c).labelSlots.map(\.name)
  }

  /// Trains one configuration and scores it on the test split (collective).
  func train(_ c: PretrainConfig, comm: Communicator, console: Console, threads: Int) throws -> MTLResults.Run {
    let trainer = try Pretrainer(config: c, comm: comm, console: console)
    guard let method = trainer.method as? SupervisedMTLMethod else {
      throw ConfigError(message: "parallax mtl: the method is not supervised")
    }
    console.say(
      "mtl \(c.mtl.rawValue) · tasks \(method.taskNames.joined(separator: ",")) · \(c.model.rawValue) · \(c.data.rawValue) · \(comm.size) rank(s) × \(threads) thread(s) · global batch \(c.globalBatch) · \(trainer.totalSteps) steps · \(method.arena.parameterCount) parameters")
    let s = try trainer.run()
    trainer.stopSyncThreads()
    trainer.closeData()
    let accuracy = try method.accuracy(on: try Datasets.open(c).evaluation(.test))
    return MTLResults.Run(
      tasks: method.taskNames, accuracy: accuracy, steps: s.steps, secondsPerStep: s.seconds / Double(max(s.steps, 1)),
      finalLoss: s.finalLoss)
  }
}
