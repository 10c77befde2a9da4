import Data
import Dist
import Foundation
import Model

public struct TrainError: Error, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// What a finished (or stopped) pretraining run reports.
public struct PretrainSummary {
  public var steps: Int
  public var finalLoss: Float
  public var seconds: Double
  public var samplesPerSecond: Double
  public var checkpoint: String?
  /// Set when the run stopped early and cleanly: the signal's name or `--stop-after`.
  public var stopReason: String?
}

/// Self-supervised pretraining: both views of the local batch → the method's forward, loss
/// over the global batch and backward → bucketed gradient all-reduce → optimizer step.
public final class Pretrainer {
  public let config: PretrainConfig
  let comm: Communicator
  let console: Console
  public let method: SSLMethod
  let optimizer: LARS
  let schedule: WarmupCosine
  let data: ViewBatchSource
  /// [2·B_local, C, H, W]: view 1 rows then view 2 rows.
  let input: Storage
  let inputShape: Shape
  /// [2·B_local, T] multi-hot labels of the augmentations applied (T = 0: none).
  let transforms: Storage
  public internal(set) var step = 0
  var epoch = 0
  var batchInEpoch = 0
  public let totalSteps: Int
  public let peakLR: Float
  /// Stop cleanly (with a checkpoint) once this many steps are done, as a pre-empted job
  /// would; `--resume` continues the same schedule.
  public var stopAfterStep: Int?
  /// The checkpoint this run resumed from.
  public internal(set) var resumedFrom: String?
  /// Gradient sync, watchdog, timeline and drift check (Pretrainer+Step.swift).
  lazy var machinery = StepMachinery()

  public init(config: PretrainConfig, comm: Communicator, console: Console) throws {
    try config.validate(worldSize: comm.size)
    self.config = config
    self.comm = comm
    self.console = console
    data = try ViewSources.make(
      config, globalBatch: config.globalBatch, rank: comm.rank, worldSize: comm.size)
    inputShape = data.batchShape
    input = Storage(inputShape.count)
    transforms = Storage(max(1, inputShape.n * data.transformCount))
    method = try Methods.make(config, collective: comm)
    // The input is data: its gradient is never used.
    (method.encoder as? Conv4)?.computesInputGradient = false
    (method.encoder as? ResNet18)?.computesInputGradient = false
    let scaling: LRScaling = config.lrScaling == "sqrt" ? .sqrt : config.lrScaling == "linear" ? .linear : .none
    peakLR = scaling.scaled(config.baseLR, globalBatch: config.globalBatch)
    let perEpoch = data.batchesPerEpoch
    totalSteps = config.maxSteps > 0 ? config.maxSteps : config.epochs * perEpoch
    schedule = WarmupCosine(
      baseLR: peakLR, warmupSteps: min(config.warmupSteps, max(totalSteps - 1, 0)),
      totalSteps: totalSteps)
    optimizer =
      config.optimizer == "sgd"
      ? SGD(
        parameterCount: method.arena.parameterCount, momentum: config.momentum,
        weightDecay: config.weightDecay)
      : LARS(
        parameterCount: method.arena.parameterCount, momentum: config.momentum,
        weightDecay: config.weightDecay, trustCoefficient: config.larsEta)
    // Every rank starts from rank 0's parameters, whatever its own initialisation did.
    try comm.broadcast(method.arena.params, count: method.arena.parameterCount, from: 0)
    try comm.broadcast(method.arena.buffers, count: method.arena.bufferCount, from: 0)
  }

  /// Trains until `totalSteps`, writing a checkpoint every `checkpointEvery` steps and at the
  /// end. A stop request (SIGTERM, SIGINT, SIGUSR1 on any rank, or `stopAfterStep`) ends the
  /// run at the next step boundary with a checkpoint; the ranks agree on it with one MAX
  /// all-reduce per step, so all stop after the same step.
  public func run() throws -> PretrainSummary {
    StopSignal.install()
    var log: AppendFile?
    if comm.rank == 0 {
      try FileManager.default.createDirectory(atPath: config.runDir, withIntermediateDirectories: true)
      try AtomicFile.write(Foundation.Data(config.yaml().utf8), to: config.runDir + "/config.yaml")
      log = try AppendFile(path: config.runDir + "/log.jsonl")
    }
    let perEpoch = data.batchesPerEpoch
    let samplesPerStep = Double(config.globalBatch)
    let start = now()
    let firstStep = step
    var last: Float = .nan
    var lastCheckpoint: String?
    var checkpointStep = -1
    var stopReason: String?
    RankLog.note("training from step \(step) to \(totalSteps) (epoch \(epoch), batch \(batchInEpoch) of \(perEpoch))")
    while step < totalSteps {
      if batchInEpoch >= perEpoch {
        epoch += 1
        batchInEpoch = 0
      }
      let lr = schedule.lr(at: step)
      let stepStart = now()
      let (value, compute, communicate) = try trainStep(lr: lr)
      let elapsed = now() - stepStart
      step += 1
      batchInEpoch += 1
      last = value
      if step % config.logEvery == 0 || step == totalSteps {
        RankLog.note(String(format: "step %d epoch %d loss %.6f lr %.6g (%.0f ms)", step, epoch, value, lr, elapsed * 1000))
      }
      if comm.rank == 0, step % config.logEvery == 0 || step == totalSteps {
        let line = String(
          format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.6f,\"lr\":%.6g,\"samples_per_s\":%.1f,\"compute_ms\":%.2f,\"comm_ms\":%.2f}\n",
          step, epoch, value, lr, samplesPerStep / elapsed, compute * 1000, communicate * 1000)
        do { try log?.write(line) } catch {
          // Metrics are not worth the run: say so once and continue.
          console.say("warning: \(error); metrics stop here, training continues")
          RankLog.note("warning: \(error)")
          log = nil
        }
        console.progress(
          done: step - firstStep, total: totalSteps - firstStep,
          detail: String(format: "step %d loss %.4f · %.0f samples/s", step, value, samplesPerStep / elapsed),
          elapsed: now() - start)
      }
      if let reason = try stopRequested() {
        stopReason = reason
        break
      }
      if config.checkpointEvery > 0, step % config.checkpointEvery == 0, step < totalSteps {
        lastCheckpoint = try writeCheckpoint()
        checkpointStep = step
      }
    }
    console.endProgress()
    // The end (or the stop) always has a checkpoint, unless nothing happened since the one
    // this run resumed from.
    if checkpointStep != step && (step > firstStep || resumedFrom == nil) {
      lastCheckpoint = try writeCheckpoint()
    } else if lastCheckpoint == nil {
      lastCheckpoint = resumedFrom
    }
    if let r = stopReason { RankLog.note("stopped after step \(step) (\(r))") }
    try comm.barrier()
    let seconds = now() - start
    return PretrainSummary(
      steps: step - firstStep, finalLoss: last, seconds: seconds,
      samplesPerSecond: Double(step - firstStep) * samplesPerStep / max(seconds, 1e-9),
      checkpoint: lastCheckpoint, stopReason: stopReason)
  }

  /// Whether to stop after this step: a signal on any rank (MAX all-reduce of the signal
  /// number, so every rank stops at the same step) or `stopAfterStep`.
  func stopRequested() throws -> String? {
    let signal = comm.size > 1 ? try comm.allReduce(Int64(StopSignal.pending), op: .max) : Int64(StopSignal.pending)
    if signal != 0 { return StopSignal.name(Int32(signal)) }
    if let s = stopAfterStep, step >= s, step < totalSteps { return "--stop-after \(s)" }
    return nil
  }
}
