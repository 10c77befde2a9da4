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

      --recon-search STEPS runs Recon (Shi et al., ICLR 2023) first: STEPS steps of the shared \
      model with --conflict-scores (run directory RUN_DIR/recon-search), then the --recon-layers \
      layers with the most S-conflicts (cosine of two tasks' gradients of the layer below \
      --recon-threshold) become task-specific (--task-specific) and the model trains from \
      scratch; RUN_DIR/recon.json has the scores and the choice.

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
  @Option(help: "Recon: steps of the conflict search before training (0: no search).") var reconSearch: Int = 0
  @Option(help: "Recon: how many of the most conflicting layers become task-specific.") var reconLayers: Int = 2

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
    let c: PretrainConfig
    do {
      c = try resolved()
      try c.validate()
    } catch let e as ConfigError {
      throw ValidationError(e.message)
    }
    if threads < 0 { throw ValidationError("--threads must be ≥ 0") }
    if singleTask && baselines != nil { throw ValidationError("--single-task trains the baselines; drop --baselines") }
    if reconSearch < 0 { throw ValidationError("--recon-search must be ≥ 0 (steps)") }
    if reconSearch > 0 {
      let known = MultiTaskEncoder.conv4LayerNames(prefix: "encoder").count
      guard (1...known).contains(reconLayers) else {
        throw ValidationError("--recon-layers must be in 1…\(known) (conv4's convolutions and norms)")
      }
      if singleTask { throw ValidationError("--recon-search balances several tasks; drop --single-task") }
      if !c.taskSpecific.isEmpty {
        throw ValidationError("--recon-search chooses the task-specific layers; drop --task-specific \(c.taskSpecific)")
      }
      if c.model != .conv4 { throw ValidationError("--recon-search: the branched encoder is conv4's (got --model \(c.model))") }
      if c.mgdaOn == .representation {
        throw ValidationError("--recon-search needs the parameters' task gradients, not MGDA-UB's (--mgda-on representation)")
      }
    }
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
          let r = try train(ct, comm: comm, console: console, threads: threads).run
          single[t] = r.accuracy[0]
        }
        if comm.rank == 0 {
          try MTLResults.writeBaselines(single, tasks: tasks, to: c.runDir + "/baselines.json")
          console.say("single-task baselines: " + tasks.map { String(format: "%@ %.2f %%", $0, 100 * single[$0]!) }.joined(separator: " · ") + " → \(c.runDir)/baselines.json")
        }
        return
      }
      var c = c
      if reconSearch > 0 {
        let layers = try recon(c, comm: comm, console: console, threads: threads)
        try OptionArguments.apply(["--task-specific=" + layers.joined(separator: ",")], to: &c)
      }
      let r = try train(c, comm: comm, console: console, threads: threads).run
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

  /// Recon's search (collective): `reconSearch` steps of the shared model with conflict
  /// scores, then the `reconLayers` layers with the most conflicts (none with zero), written
  /// with the scores to RUN_DIR/recon.json.
  func recon(_ c: PretrainConfig, comm: Communicator, console: Console, threads: Int) throws -> [String] {
    var cs = c
    try OptionArguments.apply(
      ["--max-steps", "\(reconSearch)", "--conflict-scores", "--task-specific=", "--run-dir", c.runDir + "/recon-search"],
      to: &cs)
    console.say("recon: conflict search, \(reconSearch) steps, S = \(c.reconThreshold) → \(cs.runDir)")
    guard let conflicts = try train(cs, comm: comm, console: console, threads: threads).conflicts else {
      throw TrainError("recon: the search run recorded no conflict scores")
    }
    let ranked = conflicts.ranked
    let chosen = ranked.prefix(reconLayers).filter { $0.conflicts > 0 }.map(\.layer)
    if comm.rank == 0 {
      try MTLResults.writeRecon(conflicts, chosen: chosen, to: c.runDir + "/recon.json")
      console.say(
        "recon: conflicts per layer (of \(conflicts.steps * conflicts.pairs)) "
          + ranked.map { "\($0.layer) \($0.conflicts)" }.joined(separator: " · ")
          + " → task-specific: " + (chosen.isEmpty ? "none (no layer conflicted)" : chosen.joined(separator: ", ")))
    }
    return chosen
  }

  /// Trains one configuration and scores it on the test split (collective); with
  /// --conflict-scores, also writes RUN_DIR/conflicts.json.
  func train(_ c: PretrainConfig, comm: Communicator, console: Console, threads: Int) throws -> (
    run: MTLResults.Run, conflicts: LayerConflicts?
  ) {
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
    if let conflicts = method.conflicts, comm.rank == 0 {
      try MTLResults.writeRecon(conflicts, chosen: nil, to: c.runDir + "/conflicts.json")
    }
    let run = MTLResults.Run(
      tasks: method.taskNames, accuracy: accuracy, steps: s.steps, secondsPerStep: s.seconds / Double(max(s.steps, 1)),
      finalLoss: s.finalLoss)
    return (run, method.conflicts)
  }
}
