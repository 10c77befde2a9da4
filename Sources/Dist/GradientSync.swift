import CMPI
import Foundation
import Model

/// Where MPI gets the CPU to move a bucket while backward runs.
public enum SyncProgress: String, Sendable, CaseIterable, Codable {
  /// The training thread calls `MPI_Test` on the buckets in flight each time backward
  /// reports progress (and every blocking collective of sync BN drives them too).
  case poll
  /// A communication thread starts the buckets and polls them (`MPI_THREAD_MULTIPLE`),
  /// sleeping `pollInterval` between tests.
  case thread
}

/// When one bucket's all-reduce started and when its completion was seen (seconds,
/// `CLOCK_MONOTONIC`).
public struct BucketTiming: Sendable {
  public var index: Int
  public var start: Double
  public var end: Double
}

/// Sums the gradient arena over all ranks in buckets that start while backward still runs
/// (PyTorch DDP's reducer, Horovod's tensor fusion).
///
/// One step: `begin()`, then `gradientsReady(from:)` from backward's progress hook each time
/// a range becomes final, then `finish()`, which starts what is left and waits for every
/// bucket. Buckets are started in index order on every rank (DESIGN.md invariant 2), never
/// in completion order, on a duplicate of the world communicator so that they cannot
/// interleave with the collectives sync BatchNorm and the loss run on the world meanwhile.
///
/// The reduction is a **sum**: each rank's backward yields its share of the gradient of the
/// global-mean loss.
///
/// Threading: every mutable field below is read and written only while holding `condition`
/// (MPI calls are made outside it, on local copies of the request handles). The gradient
/// memory of a bucket and its staging buffer are handed over without the lock: backward
/// finishes writing a bucket before releasing it, and nothing touches it again until
/// `finish()` has seen it complete. Hence `@unchecked Sendable`; `onWait` is the training
/// thread's alone.
public final class GradientSync: @unchecked Sendable {
  public let buckets: [GradientBucket]
  public let wire: WireType
  public let progress: SyncProgress
  /// Sleep between `MPI_Test` rounds of the communication thread.
  public let pollInterval: Double
  public let size: Int
  /// One bucket started by `finish()` after backward (cap 0): nothing overlaps.
  public let fused: Bool

  /// [parameterCount] the arena's gradients; reduced in place.
  private let grads: UnsafeMutablePointer<Float>
  private var comm: MPI_Comm?
  private let op: MPI_Op
  private let datatype: MPI_Datatype
  /// Per bucket, `count` 16-bit values (compressed wire types only).
  private var staging: [UnsafeMutablePointer<UInt16>] = []

  /// Called (on the training thread) with the bucket `finish()` is about to wait for: the
  /// stall watchdog's marker.
  public var onWait: ((_ bucket: Int) -> Void)?

  // Everything below is guarded by `condition`.
  private let condition = NSCondition()
  private var requests: [MPI_Request?]
  private var completed: [Bool]
  private var startTimes: [Double]
  private var endTimes: [Double]
  /// Buckets started so far this step (they are started in index order).
  private var started = 0
  /// Buckets backward has handed to the communication thread (`.thread`).
  private var released = 0
  private var done = 0
  private var threadError: Error?
  private var stopping = false
  private var thread: Thread?
  private let exited = DispatchSemaphore(value: 0)

  /// - Parameters:
  ///   - communicator: the world; its communicator is duplicated (collective call).
  ///   - grads: the arena's gradient buffer, which must outlive this object.
  ///   - ranges: every parameter range's `(offset, count)`, registration order.
  ///   - capBytes: bucket cap in fp32 bytes; 0 = one fused bucket.
  /// - Throws: `MPIError`; `DistError.threadLevelUnavailable` for `.thread` without
  ///   `MPI_THREAD_MULTIPLE`.
  public init(
    communicator: Communicator, grads: UnsafeMutablePointer<Float>,
    ranges: [(offset: Int, count: Int)], capBytes: Int, wire: WireType = .fp32,
    progress: SyncProgress = .poll, pollInterval: Double = 50e-6
  ) throws {
    try communicator.ensureLive()
    if progress == .thread && communicator.providedThreadLevel < cmpi_thread_multiple() {
      throw DistError.threadLevelUnavailable(
        requested: .multiple, provided: communicator.providedThreadLevel)
    }
    buckets = GradientBuckets.plan(ranges: ranges, capBytes: capBytes)
    fused = capBytes <= 0
    for b in buckets { _ = try mpiCount(b.count, "MPI_Iallreduce") }
    self.grads = grads
    self.wire = wire
    self.progress = progress
    self.pollInterval = pollInterval
    size = communicator.size
    op = try HalfSumOps.op(for: wire)
    datatype = wire == .fp32 ? cmpi_float() : cmpi_uint16()
    var dup: MPI_Comm? = nil
    try mpiCheck("MPI_Comm_dup", MPI_Comm_dup(communicator.comm, &dup))
    try mpiCheck("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(dup, cmpi_errors_return()))
    comm = dup
    if wire != .fp32 {
      staging = buckets.map { UnsafeMutablePointer<UInt16>.allocate(capacity: max($0.count, 1)) }
    }
    requests = Array(repeating: cmpi_request_null(), count: buckets.count)
    completed = Array(repeating: true, count: buckets.count)
    startTimes = Array(repeating: 0, count: buckets.count)
    endTimes = Array(repeating: 0, count: buckets.count)
    started = buckets.count
    if progress == .thread {
      let t = Thread { [unowned self] in self.communicationLoop() }
      t.name = "parallax-gradient-sync"
      thread = t
      t.start()
    }
  }

  deinit {
    close()
    for s in staging { s.deallocate() }
  }

  /// Stops the communication thread and waits for it to exit. Call only between steps,
  /// before `MPI_Finalize`. Idempotent.
  public func close() {
    condition.lock()
    stopping = true
    condition.broadcast()
    let t = thread
    thread = nil
    condition.unlock()
    if t != nil { exited.wait() }
  }

  /// Start and completion times of the last step's buckets.
  public var timings: [BucketTiming] {
    condition.lock()
    defer { condition.unlock() }
    return buckets.indices.map { BucketTiming(index: $0, start: startTimes[$0], end: endTimes[$0]) }
  }

  /// Prepares a step: no bucket is ready. The gradients must not be in flight.
  public func begin() {
    condition.lock()
    precondition(done == released, "GradientSync.begin while buckets are in flight")
    started = 0
    released = 0
    done = 0
    threadError = nil
    for i in buckets.indices { completed[i] = false }
    condition.unlock()
  }

  /// Backward's progress hook: every gradient at or above `lowestFinishedOffset` is final.
  /// Starts (or, with `.thread`, releases to the communication thread) every bucket that
  /// lies entirely in that part, in index order, and polls the ones in flight.
  public func gradientsReady(from lowestFinishedOffset: Int) throws {
    if fused { return }
    switch progress {
    case .poll:
      var ready = locked { started }
      while ready < buckets.count && buckets[ready].offset >= lowestFinishedOffset { ready += 1 }
      try startBuckets(upTo: ready)
      _ = try poll()
    case .thread:
      condition.lock()
      var ready = released
      while ready < buckets.count && buckets[ready].offset >= lowestFinishedOffset { ready += 1 }
      if ready > released {
        released = ready
        condition.broadcast()
      }
      condition.unlock()
    }
  }

  /// Starts every bucket not started yet and waits until all are reduced; afterwards the
  /// arena holds the sum over ranks.
  public func finish() throws {
    switch progress {
    case .poll:
      try startBuckets(upTo: buckets.count)
      for i in buckets.indices where !locked({ completed[i] }) {
        onWait?(i)
        var request = locked { requests[i] }
        let code = MPI_Wait(&request, cmpi_status_ignore())
        try mpiCheck("MPI_Wait", code)
        complete(i, request: request)
      }
    case .thread:
      release(buckets.count)
      condition.lock()
      defer { condition.unlock() }
      while done < buckets.count && threadError == nil {
        let waiting = done
        condition.unlock()
        onWait?(waiting)
        condition.lock()
        if done < buckets.count && threadError == nil { condition.wait() }
      }
      if let e = threadError { throw e }
    }
  }

  // MARK: Starting and completing buckets

  private func locked<T>(_ body: () throws -> T) rethrows -> T {
    condition.lock()
    defer { condition.unlock() }
    return try body()
  }

  /// Starts buckets `started..<end` in index order.
  private func startBuckets(upTo end: Int) throws {
    var next = locked { started }
    while next < end {
      try start(next)
      next += 1
    }
  }

  /// Starts bucket `i` (the next one in index order) and records it under the lock.
  private func start(_ i: Int) throws {
    let b = buckets[i]
    let t = now()
    let buffer: UnsafeMutableRawPointer
    if wire == .fp32 {
      buffer = UnsafeMutableRawPointer(grads + b.offset)
    } else {
      HalfPrecision.encode(grads + b.offset, into: staging[i], count: b.count, wire)
      buffer = UnsafeMutableRawPointer(staging[i])
    }
    var request: MPI_Request? = cmpi_request_null()
    try mpiCheck(
      "MPI_Iallreduce",
      MPI_Iallreduce(cmpi_in_place(), buffer, Int32(b.count), datatype, op, comm, &request))
    locked {
      requests[i] = request
      startTimes[i] = t
      started = i + 1
    }
  }

  /// Tests the buckets in flight (drives MPI's progress engine); returns how many completed.
  private func poll() throws -> Int {
    let inFlight: [(Int, MPI_Request?)] = locked {
      (0..<started).filter { !completed[$0] }.map { ($0, requests[$0]) }
    }
    var finished = 0
    for (i, r) in inFlight {
      var request = r
      var flag: Int32 = 0
      try mpiCheck("MPI_Test", MPI_Test(&request, &flag, cmpi_status_ignore()))
      if flag != 0 {
        complete(i, request: request)
        finished += 1
      }
    }
    return finished
  }

  /// Decodes bucket `i` (compressed wire types) and records its completion under the lock.
  private func complete(_ i: Int, request: MPI_Request?) {
    let b = buckets[i]
    if wire != .fp32 { HalfPrecision.decode(staging[i], into: grads + b.offset, count: b.count, wire) }
    let t = now()
    locked {
      requests[i] = request
      endTimes[i] = t
      completed[i] = true
    }
  }

  // MARK: Communication thread

  private func release(_ count: Int) {
    condition.lock()
    if count > released {
      released = count
      condition.broadcast()
    }
    condition.unlock()
  }

  private func communicationLoop() {
    while true {
      condition.lock()
      while !stopping && started == released && done == started { condition.wait() }
      if stopping {
        condition.unlock()
        exited.signal()
        return
      }
      let target = released
      condition.unlock()
      do {
        try startBuckets(upTo: target)
        let finished = try poll()
        condition.lock()
        done += finished
        if finished > 0 { condition.broadcast() }
        let idle = done == started && started == released
        condition.unlock()
        if !idle && finished == 0 { sleepSeconds(pollInterval) }
      } catch {
        condition.lock()
        threadError = error
        done = buckets.count
        released = buckets.count
        started = buckets.count
        condition.broadcast()
        condition.unlock()
      }
    }
  }
}

func sleepSeconds(_ s: Double) {
  var ts = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
  nanosleep(&ts, nil)
}
