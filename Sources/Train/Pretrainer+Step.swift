import Data
import Dist
import Foundation
import Model

/// Where one training step's time went, in seconds, and its losses.
public struct StepTiming {
  /// Reading and augmenting the method's inputs.
  public var data: Double
  /// Forward, loss and backward (and the drift check when on).
  public var compute: Double
  /// Gradient all-reduce time not hidden behind backward.
  public var communication: Double
  /// Optimizer update.
  public var optimizer: Double
  /// The step's loss: the mean of the micro-batch totals.
  public var loss: Float
  /// Each task's loss, the mean over micro-batches.
  public var tasks: [(name: String, value: Float)]
  public var total: Double { data + compute + communication + optimizer }
}

/// The collective side of a step on more than one rank: the bucketed gradient sync and the
/// stall watchdog. On one rank both are absent and a step communicates nothing.
final class StepSync {
  let gradients: GradientSync?
  let watchdog: Watchdog?
  /// Set while the last micro-batch's backward runs: only then do finished ranges start
  /// their buckets.
  var armed = false
  /// An error a backward hook met (hooks cannot throw); rethrown after backward.
  var hookError: Error?

  /// Collective: duplicates communicators on every rank.
  init(config: PretrainConfig, comm: Communicator, arena: ParameterArena, console: Console) throws {
    guard comm.size > 1 else {
      gradients = nil
      watchdog = nil
      return
    }
    let sync = try GradientSync(
      communicator: comm, grads: arena.grads,
      ranges: arena.parameterRanges.map { ($0.offset, $0.count) },
      capBytes: Int(config.bucketMB * 1024 * 1024), wire: config.gradDType, progress: config.syncProgress)
    var dog: Watchdog?
    if config.stallTimeout > 0 {
      do { dog = try Watchdog(communicator: comm, timeout: config.stallTimeout) } catch DistError.threadLevelUnavailable {
        console.say("note: stall watchdog off (MPI was not initialised with MPI_THREAD_MULTIPLE)")
      }
    }
    gradients = sync
    watchdog = dog
    console.say(
      "gradient sync: \(sync.buckets.count) bucket(s) (cap \(config.bucketMB) MiB), wire \(sync.wire), progress \(sync.progress), watchdog \(dog.map { "\($0.timeout) s" } ?? "off")"
    )
  }

  /// Backward finished every gradient at or above `offset`.
  func ready(from offset: Int) {
    guard armed, hookError == nil, let g = gradients else { return }
    do { try g.gradientsReady(from: offset) } catch { hookError = error }
  }
}

/// The timeline of a run (`--timeline`): the compute track's events from a cursor that each
/// recorded phase advances, labelled by the arena's unit names.
final class StepTimeline {
  let timeline: Timeline
  /// End of the last recorded compute event.
  var cursor = 0.0
  /// A unit's label by the arena offset its progress hooks report.
  let labels: [Int: String]

  /// Collective: a barrier, so every rank's origin is the same instant.
  init(arena: ParameterArena, comm: Communicator) throws {
    try comm.barrier()
    timeline = Timeline(origin: now())
    labels = Self.unitLabels(arena)
  }

  /// Records the compute-track event from the cursor to now.
  func record(_ name: String, _ category: String) {
    let t = now()
    timeline.add(name, category, start: cursor, end: t)
    cursor = t
  }

  func unit(_ offset: Int, _ category: String) { record(labels[offset] ?? category, category) }

  /// Labels of the units the hooks report, from the arena's names: a layer's name without
  /// `.weight`/`.bias`, and for ResNet blocks (which report once, at their first range) the
  /// block's name.
  static func unitLabels(_ arena: ParameterArena) -> [Int: String] {
    var labels: [Int: String] = [:]
    for r in arena.parameterRanges where labels[r.offset] == nil {
      var name = r.name
      for suffix in [".weight", ".bias"] where name.hasSuffix(suffix) {
        name.removeLast(suffix.count)
      }
      if name.contains(".layer"), name.hasSuffix(".conv1") { name.removeLast(".conv1".count) }
      labels[r.offset] = name
    }
    return labels
  }
}

extension Pretrainer {
  /// The gradient buckets in issue order (empty on a single rank, where nothing is reduced).
  public var gradientBuckets: [GradientBucket] { sync.gradients?.buckets ?? [] }

  /// Backward progress starts gradient buckets; with a timeline, forward and backward
  /// progress also record per-unit events.
  func installProgressHooks() {
    let sync = self.sync
    let tl = timeline
    for r in method.progressReporters {
      r.onBackward = { offset in
        tl?.unit(offset, "backward")
        sync.ready(from: offset)
      }
      if let tl { r.onForward = { offset in tl.unit(offset, "forward") } }
    }
  }

  /// One optimizer step on the current batch: `accumulate` micro-batches, each forward and
  /// backward; the last one's backward starts the gradient buckets as their ranges finish.
  /// The time is split into data, compute, exposed communication and optimizer.
  func timedStep(lr: Float) throws -> StepTiming {
    let arena = method.arena
    let k = config.accumulate
    let wd = sync.watchdog
    let tl = timeline
    let number = step + 1
    // `--mtl`: per-task backward, balanced after the sync (see `TaskBalancing`).
    let multiTask = method as? MultiTaskMethod
    let balancing = multiTask?.balancing
    // `--layerwise`: the stage this step trains; only its ranges are updated.
    var trainable: [NamedRange]?
    if let lw = layerwise, let method = method as? LayerwiseTrainable {
      let stage = lw.position(ofStep: step).stage
      if method.stage != stage || step == 0 {
        console.say("layer-wise stage \(stage + 1) of \(lw.stages) from step \(number) (\(lw.stepsPerStage) steps)")
        RankLog.note("layer-wise stage \(stage + 1) of \(lw.stages) from step \(number)")
      }
      method.stage = stage
      trainable = method.trainableRanges(stage: stage)
    }
    let stepStart = now()
    tl?.cursor = stepStart
    arena.zeroGrads()
    var total: Float = 0
    var tasks: [(name: String, value: Float)] = []
    var exposed = 0.0
    var dataTime = 0.0
    for micro in 0..<k {
      let last = micro == k - 1
      wd?.mark(step: step, micro: micro, .load)
      let loadStart = now()
      let input = try batch.load(epoch: position.epoch, batch: position.batchInEpoch, micro: micro)
      dataTime += now() - loadStart
      tl?.record("load", "data")
      wd?.mark(step: step, micro: micro, .forward)
      if last {
        sync.gradients?.begin()
        // Per-task backward runs the encoder backward once per task: a range reported
        // finished by the first may still receive the second's gradient, so no bucket starts
        // early; `finish()` starts them all.
        sync.armed = balancing == nil
      }
      defer { sync.armed = false }
      // The step's loss is the mean of the micro-batch losses.
      let losses: TaskLosses
      if let balancing, let multiTask {
        losses = try balancing.forwardBackward(multiTask, input, lossScale: 1 / Float(k))
      } else {
        losses = try method.forwardBackward(input, lossScale: 1 / Float(k))
      }
      guard losses.total.isFinite else {
        throw TrainError("loss is \(losses.total) at step \(number); stopping (nothing written after step \(step))")
      }
      total += losses.total
      if tasks.isEmpty { tasks = losses.tasks.map { ($0.name, 0) } }
      for (i, t) in losses.tasks.enumerated() where i < tasks.count { tasks[i].value += t.value / Float(k) }
      tl?.record("loss and backward", "backward")
      if let e = sync.hookError {
        sync.hookError = nil
        throw e
      }
      if last {
        hooks.afterBackward?(number)
        let t0 = now()
        wd?.mark(step: step, micro: micro, .gradientSync, bucket: 0)
        // Each rank's backward yields its share of the gradient of the global-mean loss,
        // so the shares are summed (not averaged).
        try sync.gradients?.finish()
        exposed = now() - t0
        tl?.record("wait for gradients", "allreduce")
        if let balancing {
          // The shared ranges were zero in the sync; the combination of the globally
          // summed task gradients replaces them.
          wd?.mark(step: step, micro: micro, .gradientSync, bucket: 0)
          var inspect: ((BalancingInput) throws -> Void)?
          if let f = hooks.beforeBalancing { inspect = { f(number, $0) } }
          try balancing.finishStep(step: number, epoch: position.epoch, collective: comm, arena: arena, inspect: inspect)
          tl?.record("multi-task balancing", "balancing")
        }
      }
    }
    hooks.afterGradients?(number, arena)
    wd?.mark(step: step, .optimizer)
    let optStart = now()
    try optimizer.step(arena, lr: lr, ranges: trainable ?? arena.parameterRanges)
    let optTime = now() - optStart
    tl?.record("optimizer", "optimizer")
    hooks.afterOptimizer?(number, arena)
    if config.checkEvery > 0 && number % config.checkEvery == 0 {
      wd?.mark(step: step, .driftCheck)
      try checkDrift(afterStep: number)
      tl?.record("drift check", "check")
    }
    wd?.disarm()
    let stepEnd = now()
    if let tl { recordCommunication(tl.timeline, step: number, start: stepStart, end: stepEnd, exposed: exposed) }
    return StepTiming(
      data: dataTime, compute: stepEnd - stepStart - exposed - dataTime - optTime,
      communication: exposed, optimizer: optTime, loss: total / Float(k), tasks: tasks)
  }

  /// The communication track of one step: each bucket's all-reduce and the step's span.
  private func recordCommunication(_ tl: Timeline, step number: Int, start: Double, end: Double, exposed: Double) {
    if let g = sync.gradients {
      for b in g.timings {
        tl.add(
          "bucket \(b.index)", "allreduce", start: b.start, end: b.end, track: .communication,
          args: [
            "step": Double(number), "bucket": Double(b.index),
            "bytes": Double(g.buckets[b.index].count * g.wire.bytes),
          ])
      }
    }
    tl.add(
      "step \(number)", "step", start: start, end: end, track: .communication,
      args: ["step": Double(number), "exposed_ms": exposed * 1000])
  }

  /// Checks that every rank holds bitwise the same parameters (`--check-every`).
  /// - Throws: `TrainError` naming the first differing range.
  func checkDrift(afterStep number: Int) throws {
    let arena = method.arena
    let sums = arena.parameterRanges.map {
      ReplicaChecksum.of(UnsafeBufferPointer(start: arena.params + $0.offset, count: $0.count))
    }
    if let i = try ReplicaChecksum.firstDisagreement(sums, comm: comm) {
      let r = arena.parameterRanges[i]
      throw TrainError(
        "drift check after step \(number): parameters differ across ranks; first differing range '\(r.name)' (arena offset \(r.offset), \(r.count) values)")
    }
  }

  /// Stops the watchdog and communication threads (before `MPI_Finalize`, which they must
  /// not outlive). Training cannot continue afterwards.
  public func stopSyncThreads() {
    sync.watchdog?.stop()
    sync.gradients?.close()
  }

  /// Rank 0 writes the timeline of every rank (collective; a no-op without `--timeline`).
  public func writeTimeline() throws {
    guard let tl = timeline else { return }
    try tl.timeline.write(to: config.timeline, comm: comm)
  }

  /// One step for benchmarks with its time split (advances the position like training does).
  public func benchStepTimed() throws -> StepTiming {
    position.nextBatch(perEpoch: data.batchesPerEpoch)
    let t = try timedStep(lr: learningRate(at: step))
    position.finishStep()
    try method.afterOptimizerStep(step: step)
    return t
  }

  /// Counted FLOPs of one training step on this rank (forward ×3: DESIGN of `FLOPCounting`),
  /// or nil if the encoder does not count.
  public var stepFLOPs: Int? {
    method.forwardFLOPs(data.batchShape).map { 3 * $0 }
  }

  /// Bytes the step needs: parameters, gradients, BN buffers, optimizer state, and every
  /// layer-owned buffer (activations, saved values, input gradients, scratch) and the GEMM
  /// pack buffers. Meaningful after at least one step (buffers grow on first use).
  public var memoryEstimate: (parameters: Int, optimizer: Int, activations: Int) {
    let params = (2 * method.arena.parameterCount + method.arena.bufferCount) * 4
    let opt = optimizer.stateNames.count * method.arena.parameterCount * 4
    return (params, opt, Storage.trackedBytes + Gemm.workspaceFloats * 4)
  }
}
