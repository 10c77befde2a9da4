import ArgumentParser
import Data
import Dist
import Foundation
import Model
import Train

struct Pretrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Pretrain an encoder with a self-supervised method.",
    discussion: """
      Flags override the YAML file given with --config (its keys are the YAML keys below); the \
      resolved configuration is written to RUN_DIR/config.yaml.

      """ + OptionArguments.helpText())

  @Option(help: "YAML configuration file (flags override it).") var config: String?
  @Option(help: .hidden) var debugStallRank: Int = -1
  @Option(help: .hidden) var debugStallStep: Int = 2
  @Option(help: .hidden) var debugStallSeconds: Double = 0
  /// `backward` (after backward, before the gradient sync) or `between` (after the step,
  /// before the stop-signal all-reduce).
  @Option(help: .hidden) var debugStallWhere: String = "backward"
  @Option(help: .hidden) var debugPerturbRank: Int = -1
  @Option(help: .hidden) var debugPerturbStep: Int = 1
  @Option(help: .hidden) var debugPerturbParam: String = ""
  /// Rank 0 writes the summed gradient of step 1 (safetensors, by parameter name) here: the
  /// rank-invariance tests compare gradients, which LARS's bounded update would hide.
  @Option(help: .hidden) var debugDumpGradients: String = ""
  /// With `--debug-dump-gradients`: also dump steps 2…N, to `PATH.step-N` (layer-wise
  /// tests compare a step of each stage).
  @Option(help: .hidden) var debugDumpSteps: Int = 1
  /// With `--mtl`: rank 0 writes the balancer input of step 1 (the task gradients summed over
  /// the ranks, the task losses) and what every balancing method makes of it (fresh
  /// instances; the run's own method is unaffected): the W ≡ 1 test of all methods at once.
  @Option(help: .hidden) var debugDumpBalancers: String = ""
  @Option(help: "OpenBLAS threads per rank (default: node cores / ranks on the node).") var threads: Int = 0
  @Option(help: "Resume from a checkpoint directory, or 'latest' in the run directory (falls back to the previous good checkpoint if the newest is damaged).") var resume: String?
  @Option(help: "Stop cleanly with a checkpoint after this many steps, as a pre-empted job would (the schedule still spans the whole run; continue with --resume).") var stopAfter: Int?
  @Flag(help: "After pretraining, run linear probes: trained encoder, random encoder, raw pixels (audio: word and language accuracy of the trained and a random encoder).") var probe = false
  @Option(help: "Linear-probe epochs (with --probe).") var probeEpochs: Int = 30
  @Option(help: "Neighbours of the weighted kNN that --probe runs beside the linear probes (0: none).") var probeKnn: Int = 20

  @Argument(
    parsing: .allUnrecognized,
    help: ArgumentHelp("Pretraining options (`--name value` or `--name=value`), listed above.", valueName: "options"))
  var settings: [String] = []

  /// The YAML file's values, then the flags' (later flags win).
  func resolved() throws -> PretrainConfig {
    var c = try config.map { try PretrainConfig.load(yamlPath: $0) } ?? PretrainConfig()
    try OptionArguments.apply(settings, to: &c)
    return c
  }

  func validate() throws {
    do { try resolved().validate() } catch let e as ConfigError {
      throw ValidationError(e.message)
    }
    if threads < 0 { throw ValidationError("--threads must be ≥ 0") }
    if let s = stopAfter, s < 1 { throw ValidationError("--stop-after must be ≥ 1") }
    if probeKnn < 0 { throw ValidationError("--probe-knn must be ≥ 0 (0: no kNN), got \(probeKnn)") }
  }

  func run() throws {
    let c = try resolved()
    // The watchdog and the communication thread call MPI from their own threads.
    if c.stallTimeout > 0 || c.syncProgress == .thread {
      _ = try? Communicator.world(threadLevel: .multiple)
    }
    try withWorld { comm, console in
      try RankLog.open(runDir: c.runDir, rank: comm.rank)
      let threads = Runtime.configureThreads(requested: threads, localSize: comm.localSize)
      RankLog.note(
        "rank \(comm.rank) of \(comm.size) · local rank \(comm.localRank) of \(comm.localSize) · \(comm.nodeCount) node(s) · host \(comm.processorName) · pid \(getpid()) · \(threads) thread(s) · rank seed \(Runtime.rankSeed(c.seed, rank: comm.rank))")
      // The checkpoint is found and checked before anything is built or written.
      let source = try resume.map { try ResumeSource.find($0, config: c, comm: comm) }
      for note in source?.notes ?? [] {
        console.say("resume: \(note)")
        RankLog.note("resume: \(note)")
      }
      let trainer = try Pretrainer(config: c, comm: comm, console: console)
      trainer.hooks = debugHooks(rank: comm.rank, config: c)
      trainer.stopAfterStep = stopAfter
      if let source {
        try trainer.resume(source)
        console.say("resumed from \(source.dir) at step \(trainer.step)")
        RankLog.note("resumed from \(source.dir) at step \(trainer.step)")
      }
      console.say(
        "pretrain \(c.method.rawValue) · \(c.model.rawValue) · \(c.data.rawValue) · \(comm.size) rank(s) on \(comm.nodeCount) node(s) × \(threads) thread(s) · global batch \(c.globalBatch) · \(trainer.totalSteps) steps · peak lr \(trainer.peakLR) · \(trainer.method.arena.parameterCount) parameters")
      let s = try trainer.run()
      try trainer.writeTimeline()
      trainer.stopSyncThreads()
      trainer.closeData()
      RankLog.note(String(format: "peak RSS %.1f MiB", peakRSSMiB()))
      if comm.rank == 0 {
        do {
          try RunRecord.write(summary: s, trainer: trainer, worldSize: comm.size, nodes: comm.nodeCount, threads: threads)
        } catch { console.say("warning: \(error); run.json not written") }
      }
      if let reason = s.stopReason {
        let message = "stopped by \(reason) after step \(trainer.step) of \(trainer.totalSteps): checkpoint \(s.checkpoint ?? "-"); continue with --resume latest"
        console.say(message)
        RankLog.note(message)
        return
      }
      console.say(
        String(
          format: "done: %d steps in %.1f s (%.1f samples/s), final loss %.4f; checkpoint %@",
          s.steps, s.seconds, s.samplesPerSecond, s.finalLoss, s.checkpoint ?? "-"))
      if probe {
        let rows = try ProbeReport.run(
          config: c, trained: trainer.method.encoder, comm: comm, console: console, epochs: probeEpochs,
          pretrainSeconds: s.seconds, knnK: probeKnn)
        do { try RunRecord.recordProbes(rows, runDir: c.runDir, eventFile: s.eventFile, step: trainer.step) } catch {
          console.say("warning: \(error); the probe results are not in the run directory")
        }
      }
    }
  }

  /// Fault injection for the watchdog and drift-check tests (hidden flags): this rank sleeps
  /// after backward of one step (or between two steps), or nudges one parameter after its optimizer step.
  func debugHooks(rank: Int, config: PretrainConfig) -> StepHooks {
    var hooks = StepHooks()
    if rank == debugStallRank, debugStallSeconds > 0 {
      let (step, seconds) = (debugStallStep, debugStallSeconds)
      let stall: (Int) -> Void = { s in if s == step { Thread.sleep(forTimeInterval: seconds) } }
      if debugStallWhere == "between" { hooks.betweenSteps = stall } else { hooks.afterBackward = stall }
    }
    if rank == debugPerturbRank {
      let (step, name) = (debugPerturbStep, debugPerturbParam)
      hooks.afterOptimizer = { s, arena in
        guard s == step, let r = arena.parameter(named: name) ?? arena.parameterRanges.dropFirst(2).first else { return }
        arena.params[r.offset] += 1e-3
      }
    }
    if rank == 0, !debugDumpGradients.isEmpty {
      let (first, last) = (debugDumpGradients, debugDumpSteps)
      hooks.afterGradients = { s, arena in
        guard s <= last else { return }
        let path = s == 1 ? first : first + ".step-\(s)"
        let entries = arena.parameterRanges.map {
          SafeTensors.Entry(name: $0.name, shape: $0.shape, values: arena.gradient(of: $0))
        }
        do { try AtomicFile.write(SafeTensors.encode(entries, metadata: [:]), to: path) } catch {
          RankLog.note("error: cannot write the gradient dump \(path): \(error)")
        }
      }
    }
    if rank == 0, !debugDumpBalancers.isEmpty {
      let path = debugDumpBalancers
      hooks.beforeBalancing = { s, input in
        guard s == 1 else { return }
        var entries = [
          SafeTensors.Entry(
            name: "input.gradients", shape: [input.tasks, input.count],
            values: Array(UnsafeBufferPointer(start: input.gradients, count: input.tasks * input.count))),
          SafeTensors.Entry(name: "input.losses", shape: [input.tasks], values: input.losses),
        ]
        var direction = [Float](repeating: 0, count: input.count)
        do {
          for name in BalancerName.allCases {
            let b = TaskBalancers.make(name, tasks: input.tasks, count: input.count, config: config)
            let w = try direction.withUnsafeMutableBufferPointer { try b.balance(input, into: $0.baseAddress!) }
            entries.append(SafeTensors.Entry(name: "\(name).direction", shape: [input.count], values: direction))
            entries.append(SafeTensors.Entry(name: "\(name).weights", shape: [w.count], values: w))
          }
          try AtomicFile.write(SafeTensors.encode(entries, metadata: [:]), to: path)
        } catch {
          RankLog.note("error: cannot write the balancer dump \(path): \(error)")
        }
      }
    }
    return hooks
  }
}
