import Data
import Dist
import Foundation
import Model

/// Where one training step's time went, in seconds.
public struct StepTiming {
  /// Reading and augmenting both views of the batch.
  public var data: Double
  /// Forward, loss and backward (and the drift check when on).
  public var compute: Double
  /// Gradient all-reduce time not hidden behind backward.
  public var communication: Double
  /// Optimizer update.
  public var optimizer: Double
  public var loss: Float
  public var total: Double { data + compute + communication + optimizer }
}

/// Faults injected on purpose by hidden command-line flags, for the watchdog and drift-check
/// tests. Never set in normal runs.
public struct DebugFaults: Sendable {
  /// This rank sleeps `stallSeconds` after backward of step `stallStep` (1-based), before
  /// the gradient sync.
  public var stallRank = -1
  public var stallStep = 2
  public var stallSeconds = 0.0
  /// This rank adds 1e-3 to the first value of parameter `perturbName` after the optimizer
  /// of step `perturbStep` (1-based).
  public var perturbRank = -1
  public var perturbStep = 1
  public var perturbName = ""
  public init() {}
}

/// Per-step machinery that the training step owns: the bucketed gradient sync, the stall
/// watchdog, the timeline, the micro-batch loader for accumulation and the drift check.
/// Built on the first step (every rank reaches it, so its collectives line up).
final class StepMachinery {
  var prepared = false
  var debug = DebugFaults()
  var sync: GradientSync?
  var watchdog: Watchdog?
  var timeline: Timeline?
  /// Accumulation: a sampler whose global batch is one micro-batch, so micro-batch k of
  /// global batch j is batch `j·K + k` of it — the k-th contiguous slice of the global
  /// batch, split over ranks exactly as a global batch of that size would be.
  var microLoader: ViewBatchSource?
  let microInput = Storage()
  var microShape = Shape(0, 0)
  /// Set by the backward hook while the last micro-batch runs.
  var syncing = false
  var hookError: Error?
  /// Timeline cursor: end of the last recorded compute event.
  var cursor = 0.0
  var backwardLabels: [Int: String] = [:]
  var forwardLabels: [Int: String] = [:]
  /// Exposed (after-backward) gradient-sync seconds of the last step.
  var lastExposed = 0.0
}

extension Pretrainer {
  /// Installs fault injection (hidden test flags).
  public func setDebugFaults(_ faults: DebugFaults) { machinery.debug = faults }

  /// The gradient buckets in issue order (empty on a single rank, where nothing is reduced).
  public var gradientBuckets: [GradientBucket] { machinery.sync?.buckets ?? [] }

  /// Builds the machinery; collective (a barrier and communicator duplications).
  func prepareMachinery() throws {
    let m = machinery
    guard !m.prepared else { return }
    m.prepared = true
    let arena = method.arena
    if comm.size > 1 {
      m.sync = try GradientSync(
        communicator: comm, grads: arena.grads,
        ranges: arena.parameterRanges.map { ($0.offset, $0.count) },
        capBytes: Int(config.bucketMB * 1024 * 1024),
        wire: WireType(rawValue: config.gradDType) ?? .fp32,
        progress: SyncProgress(rawValue: config.syncProgress) ?? .poll)
      if config.stallTimeout > 0 {
        do {
          m.watchdog = try Watchdog(communicator: comm, timeout: config.stallTimeout)
        } catch DistError.threadLevelUnavailable {
          console.say("note: stall watchdog off (MPI was not initialised with MPI_THREAD_MULTIPLE)")
        }
      }
      if let sync = m.sync {
        console.say(
          "gradient sync: \(sync.buckets.count) bucket(s) (cap \(config.bucketMB) MiB), wire \(sync.wire), progress \(sync.progress), watchdog \(m.watchdog.map { "\($0.timeout) s" } ?? "off")")
      }
      m.sync?.onWait = { [unowned self] bucket in
        self.machinery.watchdog?.mark(step: self.step, .gradientSync, bucket: bucket)
      }
    }
    if config.accumulate > 1 {
      let k = config.accumulate
      let micro = try ViewSources.make(
        config, globalBatch: config.globalBatch / k, rank: comm.rank, worldSize: comm.size)
      m.microLoader = micro
      m.microShape = micro.batchShape
      m.microInput.ensure(m.microShape.count)
    }
    if !config.timeline.isEmpty {
      try comm.barrier()
      m.timeline = Timeline(origin: now())
      (m.backwardLabels, m.forwardLabels) = unitLabels()
    }
    for r in method.progressReporters {
      r.onBackward = { [unowned self] offset in self.backwardHook(offset) }
      if m.timeline != nil {
        r.onForward = { [unowned self] offset in
          let m = self.machinery
          let t = now()
          m.timeline?.add(m.forwardLabels[offset] ?? "forward", "forward", start: m.cursor, end: t)
          m.cursor = t
        }
      }
    }
  }

  /// Labels of the units the hooks report, from the arena's names: a layer's name without
  /// `.weight`/`.bias`, and for ResNet blocks (which report once, at their first range) the
  /// block's name.
  func unitLabels() -> ([Int: String], [Int: String]) {
    var labels: [Int: String] = [:]
    for r in method.arena.parameterRanges where labels[r.offset] == nil {
      var name = r.name
      for suffix in [".weight", ".bias"] where name.hasSuffix(suffix) {
        name.removeLast(suffix.count)
      }
      if name.contains(".layer"), name.hasSuffix(".conv1") { name.removeLast(".conv1".count) }
      labels[r.offset] = name
    }
    return (labels, labels)
  }

  /// Backward finished every gradient at or above `offset`.
  func backwardHook(_ offset: Int) {
    let m = machinery
    if let tl = m.timeline {
      let t = now()
      tl.add(m.backwardLabels[offset] ?? "backward", "backward", start: m.cursor, end: t)
      m.cursor = t
    }
    guard m.syncing, m.hookError == nil, let sync = m.sync else { return }
    do { try sync.gradientsReady(from: offset) } catch { m.hookError = error }
  }

  /// One optimizer step on the current batch: `accumulate` micro-batches, each forward and
  /// backward; the last one's backward starts the gradient buckets as their ranges finish.
  /// Returns (mean loss, seconds not spent waiting for gradients, seconds waiting for them
  /// after backward — the communication that was not hidden).
  func trainStep(lr: Float) throws -> (Float, Double, Double) {
    let t = try timedStep(lr: lr)
    return (t.loss, t.data + t.compute + t.optimizer, t.communication)
  }

  /// `trainStep` with its time split into data, compute, exposed communication, optimizer.
  func timedStep(lr: Float) throws -> StepTiming {
    try prepareMachinery()
    let m = machinery
    let arena = method.arena
    let k = config.accumulate
    let wd = m.watchdog
    let tl = m.timeline
    let stepStart = now()
    m.cursor = stepStart
    arena.zeroGrads()
    var lossSum: Float = 0
    var exposed = 0.0
    var dataTime = 0.0
    for micro in 0..<k {
      let last = micro == k - 1
      wd?.mark(step: step, micro: micro, .load)
      let loadStart = now()
      let x: Tensor
      let labels: UnsafeMutablePointer<Float>? = data.transformCount > 0 ? transforms.data : nil
      if let ml = m.microLoader {
        try ml.load(epoch: epoch, batch: batchInEpoch * k + micro, into: m.microInput.data, transforms: labels)
        x = Tensor(m.microInput.data, m.microShape)
      } else {
        try data.load(epoch: epoch, batch: batchInEpoch, into: input.data, transforms: labels)
        x = Tensor(input.data, inputShape)
      }
      dataTime += now() - loadStart
      record(tl, "load", "data", track: .compute)
      wd?.mark(step: step, micro: micro, .forward)
      if last {
        m.sync?.begin()
        m.syncing = true
      }
      defer { m.syncing = false }
      // The step's loss is the mean of the micro-batch losses.
      let value = try method.forwardBackward(x, transforms: labels, lossScale: 1 / Float(k))
      guard value.isFinite else {
        throw TrainError("loss is \(value) at step \(step + 1); stopping (nothing written after step \(step))")
      }
      lossSum += value
      record(tl, "loss and backward", "backward", track: .compute)
      if let e = m.hookError {
        m.hookError = nil
        throw e
      }
      if last {
        let d = m.debug
        if comm.rank == d.stallRank && step + 1 == d.stallStep && d.stallSeconds > 0 {
          sleepSeconds(d.stallSeconds)
        }
        let t0 = now()
        wd?.mark(step: step, micro: micro, .gradientSync, bucket: 0)
        // Each rank's backward yields its share of the gradient of the global-mean loss,
        // so the shares are summed (not averaged).
        try m.sync?.finish()
        exposed = now() - t0
        record(tl, "wait for gradients", "allreduce", track: .compute)
      }
    }
    wd?.mark(step: step, .optimizer)
    let optStart = now()
    try optimizer.step(arena, lr: lr)
    let optTime = now() - optStart
    record(tl, "optimizer", "optimizer", track: .compute)
    let d = m.debug
    if comm.rank == d.perturbRank && step + 1 == d.perturbStep,
      let r = arena.parameter(named: d.perturbName) ?? arena.parameterRanges.dropFirst(2).first
    {
      arena.params[r.offset] += 1e-3
    }
    if config.checkEvery > 0 && (step + 1) % config.checkEvery == 0 {
      wd?.mark(step: step, .driftCheck)
      try checkDrift()
      record(tl, "drift check", "check", track: .compute)
    }
    wd?.disarm()
    let stepEnd = now()
    if let tl {
      if let sync = m.sync {
        for b in sync.timings {
          tl.add(
            "bucket \(b.index)", "allreduce", start: b.start, end: b.end, track: .communication,
            args: [
              "step": Double(step + 1), "bucket": Double(b.index),
              "bytes": Double(sync.buckets[b.index].count * sync.wire.bytes),
            ])
        }
      }
      tl.add(
        "step \(step + 1)", "step", start: stepStart, end: stepEnd, track: .communication,
        args: ["step": Double(step + 1), "exposed_ms": exposed * 1000])
    }
    m.lastExposed = exposed
    return StepTiming(
      data: dataTime, compute: stepEnd - stepStart - exposed - dataTime - optTime,
      communication: exposed, optimizer: optTime, loss: lossSum / Float(k))
  }

  private func record(_ tl: Timeline?, _ name: String, _ category: String, track: Timeline.Track) {
    guard let tl else { return }
    let t = now()
    tl.add(name, category, start: machinery.cursor, end: t, track: track)
    machinery.cursor = t
  }

  /// Compares a 64-bit hash of every parameter range across ranks (two `Int64` all-reduces,
  /// max and min); a range whose max and min differ is not bitwise identical everywhere.
  /// - Throws: `TrainError` naming the first differing range.
  func checkDrift() throws {
    let ranges = method.arena.parameterRanges
    var hi = ranges.map { Int64(bitPattern: Self.fnv1a(method.arena.params + $0.offset, count: $0.count)) }
    var lo = hi
    try comm.allReduce(&hi, count: hi.count, op: .max)
    try comm.allReduce(&lo, count: lo.count, op: .min)
    if let i = ranges.indices.first(where: { hi[$0] != lo[$0] }) {
      let r = ranges[i]
      throw TrainError(
        "drift check after step \(step + 1): parameters differ across ranks; first differing range '\(r.name)' (arena offset \(r.offset), \(r.count) values)")
    }
  }

  /// FNV-1a over the bit patterns of `count` floats.
  static func fnv1a(_ p: UnsafePointer<Float>, count: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for i in 0..<count {
      h ^= UInt64(p[i].bitPattern)
      h = h &* 0x0000_0100_0000_01B3
    }
    return h
  }

  /// Stops the watchdog and communication threads (before `MPI_Finalize`, which they must
  /// not outlive). Training cannot continue afterwards.
  public func stopSyncThreads() {
    machinery.watchdog?.stop()
    machinery.sync?.close()
  }

  /// Rank 0 writes the timeline of every rank (collective; a no-op without `--timeline`).
  public func writeTimeline() throws {
    guard let tl = machinery.timeline, !config.timeline.isEmpty else { return }
    try tl.write(to: config.timeline, comm: comm)
  }

  /// One step for benchmarks with its time split (advances the position like training does).
  public func benchStepTimed() throws -> StepTiming {
    if batchInEpoch >= data.batchesPerEpoch {
      epoch += 1
      batchInEpoch = 0
    }
    let t = try timedStep(lr: schedule.lr(at: step))
    step += 1
    batchInEpoch += 1
    return t
  }

  /// Counted FLOPs of one training step on this rank (forward ×3: DESIGN of `FLOPCounting`),
  /// or nil if the encoder does not count.
  public var stepFLOPs: Int? {
    method.forwardFLOPs(inputShape).map { 3 * $0 }
  }

  /// Bytes the step needs: parameters, gradients, BN buffers, optimizer state, and every
  /// layer-owned buffer (activations, saved values, input gradients, scratch) and the GEMM
  /// pack buffers. Meaningful after at least one step (buffers grow on first use).
  public var memoryEstimate: (parameters: Int, optimizer: Int, activations: Int) {
    let params = (2 * method.arena.parameterCount + method.arena.bufferCount) * 4
    let opt = optimizer.stateNames.count * optimizer.parameterCount * 4
    return (params, opt, Storage.trackedBytes + Gemm.workspaceFloats * 4)
  }
}

private func sleepSeconds(_ s: Double) {
  var ts = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
  nanosleep(&ts, nil)
}
