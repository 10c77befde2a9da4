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
  /// The TensorBoard event file rank 0 wrote (nil on other ranks, or when it could not be
  /// written): the probes append to it.
  public var eventFile: String?
}

/// Where training is: optimizer steps done (the schedule's position), the epoch, and the
/// batches of that epoch consumed. With the seed it is the whole RNG position (DESIGN.md
/// invariant 6), so it is what a checkpoint records to resume exactly.
public struct TrainingPosition: Equatable, Sendable {
  public var step = 0
  public var epoch = 0
  public var batchInEpoch = 0

  /// Moves to the next batch, starting the next epoch after `perEpoch` batches.
  mutating func nextBatch(perEpoch: Int) {
    if batchInEpoch >= perEpoch {
      epoch += 1
      batchInEpoch = 0
    }
  }

  mutating func finishStep() {
    step += 1
    batchInEpoch += 1
  }
}

/// Test hooks, called at fixed points of a step (hidden debug flags of `pretrain` set them to
/// inject stalls and drift). Never set in normal runs.
public struct StepHooks {
  /// After backward of step `step` (1-based), before waiting for the gradient sync.
  public var afterBackward: ((_ step: Int) -> Void)?
  /// After the gradients of step `step` (1-based) are summed over the ranks, before the
  /// optimizer reads them (`arena.grads` is the global batch's gradient).
  public var afterGradients: ((_ step: Int, _ arena: ParameterArena) -> Void)?
  /// With `--mtl`: the balancer's input of step `step` (task gradients summed over the ranks).
  public var beforeBalancing: ((_ step: Int, _ input: BalancingInput) -> Void)?
  /// After the optimizer of step `step` (1-based) updated `arena`.
  public var afterOptimizer: ((_ step: Int, _ arena: ParameterArena) -> Void)?
  /// After step `step` (1-based) and its log line, before the collectives between steps.
  public var betweenSteps: ((_ step: Int) -> Void)?
  public init() {}
}

/// Self-supervised pretraining: the method's inputs for the local batch → its forward, losses
/// over the global batch and backward → bucketed gradient all-reduce → optimizer step → the
/// method's post-step work.
///
/// The state is a few plain parts: the method (network, arena, extra state), the optimizer
/// and schedule, the data and its input buffers, the position, and the step's collective side
/// (`StepSync`) and timeline (`StepTimeline`), both built here on every rank.
public final class Pretrainer {
  public let config: PretrainConfig
  let comm: Communicator
  let console: Console
  public let method: SSLMethod
  let optimizer: any Optimizer
  let schedule: WarmupCosine
  let data: ViewBatchSource
  /// The input of one micro-batch (the whole local batch unless `accumulate` > 1).
  let batch: InputBuffers
  public internal(set) var position = TrainingPosition()
  public let totalSteps: Int
  public let peakLR: Float
  /// `--layerwise`: the stages' lengths (each with its own warm-up and cosine decay).
  public let layerwise: LayerwiseSchedule?
  let sync: StepSync
  let timeline: StepTimeline?
  /// Stop cleanly (with a checkpoint) once this many steps are done, as a pre-empted job
  /// would; `--resume` continues the same schedule.
  public var stopAfterStep: Int?
  public var hooks = StepHooks()
  /// The checkpoint this run resumed from.
  public internal(set) var resumedFrom: String?

  public var step: Int { position.step }
  /// MPI-IO reads of the training records (nil: `pread`).
  let shardReader: MPIShardReader?

  /// Closes the training data's MPI-IO files (collective: every rank, after `run`) and notes
  /// in the rank's log how many record bytes it read.
  public func closeData() {
    if let r = shardReader {
      RankLog.note("data: read \(r.bytesRead) record bytes through MPI-IO (\(r.mode.rawValue))")
      r.close()
    }
  }

  public init(config: PretrainConfig, comm: Communicator, console: Console) throws {
    try config.validate(worldSize: comm.size)
    self.config = config
    self.comm = comm
    self.console = console
    switch config.dataRead {
    case .pread: shardReader = nil
    case .auto: shardReader = comm.size > 1 ? MPIShardReader(communicator: comm, mode: .collective) : nil
    case .mpiio: shardReader = MPIShardReader(communicator: comm, mode: .collective)
    case .mpiioIndependent: shardReader = MPIShardReader(communicator: comm, mode: .independent)
    }
    data = try ViewSources.make(
      config, globalBatch: config.globalBatch, rank: comm.rank, worldSize: comm.size, reader: shardReader)
    // Accumulation: a source whose global batch is one micro-batch, so micro-batch k of
    // global batch j is batch `j·K + k` of it — the k-th contiguous slice of the global
    // batch, split over ranks exactly as a global batch of that size would be.
    let k = config.accumulate
    let micro =
      k > 1
      ? try ViewSources.make(
        config, globalBatch: config.globalBatch / k, rank: comm.rank, worldSize: comm.size, reader: shardReader)
      : nil
    batch = InputBuffers(source: micro ?? data, microBatches: k)
    method = try Methods.make(config, collective: comm)
    method.arena.gemmPrecision = config.precision
    for line in Self.precisionLines(config.precision, bf16Path: Gemm.bf16PathName) { console.say(line) }
    // The input is data: its gradient is never used.
    (method.encoder as? Conv4)?.computesInputGradient = false
    (method.encoder as? ResNet18)?.computesInputGradient = false
    (method.encoder as? Conv6)?.computesInputGradient = false
    peakLR = config.lrScaling.scaled(config.baseLR, globalBatch: config.globalBatch)
    let perEpoch = data.batchesPerEpoch
    let stages = config.layerwise ? (method as? LayerwiseTrainable)?.stageCount : nil
    let layerwise = stages.map { LayerwiseSchedule(config: config, stages: $0, batchesPerEpoch: perEpoch) }
    self.layerwise = layerwise
    let runSteps = config.maxSteps > 0 ? config.maxSteps : config.epochs * perEpoch
    totalSteps = layerwise?.totalSteps ?? runSteps
    (method as? RunLengthAware)?.totalSteps = totalSteps
    let scheduleSteps = layerwise?.stepsPerStage ?? totalSteps
    schedule = WarmupCosine(
      baseLR: peakLR, warmupSteps: min(config.warmupSteps, max(scheduleSteps - 1, 0)),
      totalSteps: scheduleSteps)
    let n = method.arena.parameterCount
    switch config.optimizer {
    case .sgd: optimizer = SGD(parameterCount: n, momentum: config.momentum, weightDecay: config.weightDecay)
    case .adam:
      optimizer = Adam(
        parameterCount: n, beta1: config.adamBeta1, beta2: config.adamBeta2, epsilon: config.adamEpsilon,
        weightDecay: config.weightDecay)
    case .lars:
      optimizer = LARS(
        parameterCount: n, momentum: config.momentum, weightDecay: config.weightDecay,
        trustCoefficient: config.larsEta)
    }
    // Every rank starts from rank 0's parameters, whatever its own initialisation did.
    try comm.broadcast(method.arena.params, count: method.arena.parameterCount, from: 0)
    try comm.broadcast(method.arena.buffers, count: method.arena.bufferCount, from: 0)
    sync = try StepSync(config: config, comm: comm, arena: method.arena, console: console)
    timeline = config.timeline.isEmpty ? nil : try StepTimeline(arena: method.arena, comm: comm)
    installProgressHooks()
  }

  /// Trains until `totalSteps`, writing a checkpoint every `checkpointEvery` steps and at the
  /// end. A stop request (SIGTERM, SIGINT, SIGUSR1 on any rank, or `stopAfterStep`) ends the
  /// run at the next step boundary with a checkpoint; the ranks agree on it with one MAX
  /// all-reduce per step, so all stop after the same step.
  public func run() throws -> PretrainSummary {
    StopSignal.install()
    var log = try StepLog(config: config, rank: comm.rank, console: console)
    let perEpoch = data.batchesPerEpoch
    var status = StatusLines(
      console: console, interval: config.logInterval, firstStep: step,
      epochs: (totalSteps + perEpoch - 1) / max(perEpoch, 1), start: now())
    let samplesPerStep = Double(config.globalBatch)
    let start = now()
    let firstStep = step
    var last: Float = .nan
    var lastCheckpoint: String?
    var checkpointStep = -1
    var stopReason: String?
    RankLog.note(
      "training from step \(step) to \(totalSteps) (epoch \(position.epoch), batch \(position.batchInEpoch) of \(perEpoch))")
    while step < totalSteps {
      position.nextBatch(perEpoch: perEpoch)
      let lr = learningRate(at: step)
      let t = try timedStep(lr: lr)
      // The union of this step's bucket all-reduces, for the share hidden behind backward.
      let allReduce = sync.gradients.map { g in intervalUnion(g.timings.map { (start: $0.start, end: $0.end) }) }
      position.finishStep()
      try method.afterOptimizerStep(step: step)
      last = t.loss
      if step % config.logEvery == 0 || step == totalSteps {
        RankLog.note(
          String(format: "step %d epoch %d loss %.6f lr %.6g (%.0f ms)", step, position.epoch, t.loss, lr, t.total * 1000))
        log.write(
          step: step, epoch: position.epoch, timing: t, lr: lr, samplesPerSecond: samplesPerStep / t.total,
          allReduce: allReduce)
        console.progress(
          done: step - firstStep, total: totalSteps - firstStep,
          detail: String(format: "step %d loss %.4f · %.0f samples/s", step, t.loss, samplesPerStep / t.total),
          elapsed: now() - start)
      }
      status.step(step, of: totalSteps, epoch: position.epoch, loss: t.loss, samplesPerStep: samplesPerStep)
      // The collectives between steps are watched too: a peer lost here would otherwise
      // hang the job until the transport gives up (minutes with TCP's defaults).
      hooks.betweenSteps?(step)
      watch(.stopCheck)
      if let reason = try stopRequested() {
        stopReason = reason
        break
      }
      if config.checkpointEvery > 0, step % config.checkpointEvery == 0, step < totalSteps {
        watch(.checkpoint)
        lastCheckpoint = try writeCheckpoint()
        checkpointStep = step
      }
      sync.watchdog?.disarm()
    }
    console.endProgress()
    // The end (or the stop) always has a checkpoint, unless nothing happened since the one
    // this run resumed from.
    if checkpointStep != step && (step > firstStep || resumedFrom == nil) {
      watch(.checkpoint)
      lastCheckpoint = try writeCheckpoint()
    } else if lastCheckpoint == nil {
      lastCheckpoint = resumedFrom
    }
    if let r = stopReason { RankLog.note("stopped after step \(step) (\(r))") }
    watch(.finish)
    try comm.barrier()
    sync.watchdog?.disarm()
    let seconds = now() - start
    return PretrainSummary(
      steps: step - firstStep, finalLoss: last, seconds: seconds,
      samplesPerSecond: Double(step - firstStep) * samplesPerStep / max(seconds, 1e-9),
      checkpoint: lastCheckpoint, stopReason: stopReason, eventFile: log.eventFile)
  }

  /// The stall watchdog watches `phase` after the step just finished (a no-op on one rank).
  private func watch(_ phase: Watchdog.Phase) {
    sync.watchdog?.mark(step: max(step - 1, 0), phase)
  }

  /// The learning rate of the step after `step` steps: the run's schedule, or with
  /// `--layerwise` the current stage's.
  func learningRate(at step: Int) -> Float {
    guard let lw = layerwise else { return schedule.lr(at: step) }
    return schedule.lr(at: lw.position(ofStep: step).stepInStage)
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

/// One micro-batch's input as the method asked for it: both views and the augmentation labels.
final class InputBuffers {
  let source: ViewBatchSource
  /// [2·B_micro, C, H, W]: view 1 rows then view 2 rows.
  let views: Storage
  /// [2·B_micro, T] multi-hot labels of the augmentations applied (T = 0: none).
  let transforms: Storage
  let microBatches: Int

  init(source: ViewBatchSource, microBatches: Int) {
    self.source = source
    self.microBatches = microBatches
    views = Storage(source.batchShape.count)
    transforms = Storage(max(1, source.batchShape.n * source.transformCount))
  }

  /// Loads micro-batch `micro` of global batch `batch` of `epoch`.
  func load(epoch: Int, batch: Int, micro: Int) throws -> MethodBatch {
    let labels: UnsafeMutablePointer<Float>? = source.transformCount > 0 ? transforms.data : nil
    try source.load(epoch: epoch, batch: batch * microBatches + micro, into: views.data, transforms: labels)
    let shape = source.batchShape
    let b = shape.n / source.inputs.rowsPerSample
    let s = Shape(1, shape.c, shape.h, shape.w)
    let viewRows = source.inputs.viewCount * b
    return MethodBatch(
      views: Tensor(views.data, Shape(viewRows, s.c, s.h, s.w)), transforms: labels.map { UnsafePointer($0) },
      clean: source.inputs.hasClean ? Tensor(views.data + viewRows * s.count, Shape(b, s.c, s.h, s.w)) : nil)
  }
}

/// `log.jsonl` and the TensorBoard event file (`EventFile`), written by rank 0: per logged
/// step the loss, each task's loss when the method has several, lr, throughput, the time
/// split and, on more than one rank, the all-reduce time and the share of it hidden behind
/// backward. Both carry the same figures (log.jsonl rounded as printed, the events as Float).
///
/// | log.jsonl | TensorBoard tag |
/// |---|---|
/// | `loss` | `loss` |
/// | `losses.<task>` | `loss/<task>` |
/// | `lr` | `lr` |
/// | `samples_per_s` | `throughput/samples_per_s` |
/// | `compute_ms` | `time/compute_ms` |
/// | `comm_ms` | `time/comm_ms` (exposed: not hidden behind backward) |
/// | `allreduce_ms` | `time/allreduce_ms` (the union of the bucket all-reduces) |
/// | `hidden` | `comm/hidden_share` (1 − comm_ms / allreduce_ms) |
struct StepLog {
  private var file: AppendFile?
  private var events: EventFile?
  private let console: Console

  /// The event file's path (rank 0, while it is being written).
  var eventFile: String? { events?.path }

  init(config: PretrainConfig, rank: Int, console: Console) throws {
    self.console = console
    guard rank == 0 else { return }
    try FileManager.default.createDirectory(atPath: config.runDir, withIntermediateDirectories: true)
    try AtomicFile.write(Foundation.Data(config.yaml().utf8), to: config.runDir + "/config.yaml")
    file = try AppendFile(path: config.runDir + "/log.jsonl")
    events = try EventFile(directory: config.runDir)
  }

  /// The figures of one step, by log.jsonl key, in the order written.
  static func figures(
    timing t: StepTiming, lr: Float, samplesPerSecond: Double, allReduce: Double?
  ) -> [(key: String, tag: String, value: Double, format: String)] {
    var out: [(key: String, tag: String, value: Double, format: String)] = [
      ("lr", "lr", Double(lr), "%.6g"),
      ("samples_per_s", "throughput/samples_per_s", samplesPerSecond, "%.1f"),
      ("compute_ms", "time/compute_ms", (t.total - t.communication) * 1000, "%.2f"),
      ("comm_ms", "time/comm_ms", t.communication * 1000, "%.2f"),
    ]
    if let a = allReduce {
      out.append(("allreduce_ms", "time/allreduce_ms", a * 1000, "%.2f"))
      out.append(("hidden", "comm/hidden_share", a > 0 ? max(0, 1 - t.communication / a) : 0, "%.4f"))
    }
    return out
  }

  mutating func write(
    step: Int, epoch: Int, timing t: StepTiming, lr: Float, samplesPerSecond: Double, allReduce: Double?
  ) {
    let figures = Self.figures(timing: t, lr: lr, samplesPerSecond: samplesPerSecond, allReduce: allReduce)
    if let f = file {
      var line = String(format: "{\"step\":%d,\"epoch\":%d,\"loss\":%.6f", step, epoch, t.loss)
      if t.tasks.count > 1 {
        line += ",\"losses\":{" + t.tasks.map { String(format: "\"%@\":%.6f", $0.name, $0.value) }.joined(separator: ",") + "}"
      }
      for x in figures { line += ",\"\(x.key)\":" + String(format: x.format, x.value) }
      line += "}\n"
      do { try f.write(line) } catch {
        warn(error, "log.jsonl")
        file = nil
      }
    }
    if let e = events {
      var scalars: [(tag: String, value: Float)] = [("loss", t.loss)]
      if t.tasks.count > 1 { scalars += t.tasks.map { (tag: "loss/\($0.name)", value: $0.value) } }
      scalars += figures.map { (tag: $0.tag, value: Float($0.value)) }
      do { try e.write(scalars: scalars, step: step) } catch {
        warn(error, "the TensorBoard events")
        events = nil
      }
    }
  }

  /// Metrics are not worth the run: say so once and continue.
  private func warn(_ error: Error, _ what: String) {
    console.say("warning: \(error); \(what) stop here, training continues")
    RankLog.note("warning: \(error)")
  }
}

extension Pretrainer {
  /// What the start of a run says about `precision` with the bf16 kernels `bf16Path`
  /// (`Gemm.bf16PathName`): nothing for fp32; for bf16 what is rounded, and where the CPU has
  /// no bf16 multiply-add units a warning that the portable loop is slower than fp32.
  static func precisionLines(_ precision: GemmPrecision, bf16Path: String) -> [String] {
    guard precision == .bf16 else { return [] }
    var lines = [
      "precision bf16: convolution and linear GEMM operands rounded to bf16 (\(bf16Path) kernels), fp32 accumulation, weights and optimizer"
    ]
    if bf16Path == "portable" {
      lines.append(
        "precision bf16: this CPU has no bf16 multiply-add units (AVX-512-BF16, AMX), so bf16 runs the portable reference loop, slower than fp32; --precision fp32 is the faster choice here"
      )
    }
    return lines
  }
}
