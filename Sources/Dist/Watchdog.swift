import CMPI
import Foundation
import Model

/// Ends a job that is stuck instead of letting it hang: if the training thread stays in one
/// phase of a step longer than `timeout`, the watchdog asks every other rank where it is,
/// prints the step, the phase (and the bucket, for the gradient sync) and the ranks that
/// have not arrived, then calls `MPI_Abort`.
///
/// A background thread checks the training thread's marker every `interval` and answers other
/// ranks' questions over a private duplicate of the world communicator (point-to-point,
/// eager-sized messages, so a rank whose training thread is stuck still answers through its
/// watchdog thread). Needs `MPI_THREAD_MULTIPLE`.
///
/// `@unchecked Sendable`: every mutable field is read and written under `lock`; the MPI
/// handles are fixed after `init`.
public final class Watchdog: @unchecked Sendable {
  /// Where a rank is in a step; ordered, so "behind" is well defined.
  public enum Phase: Int, Sendable, CustomStringConvertible {
    case load = 0, forward, loss, backward, gradientSync, optimizer, driftCheck
    /// Between steps: the all-reduce of stop signals, the checkpoint (the replicas' agreement
    /// check, rank 0's write, the broadcast of its status), the end-of-run barrier.
    case stopCheck, checkpoint, finish

    public var description: String {
      switch self {
      case .load: return "data loading (collective under MPI-IO reads)"
      case .forward: return "forward (sync BN / embedding all-gather)"
      case .loss: return "loss"
      case .backward: return "backward (sync BN / loss all-reduce)"
      case .gradientSync: return "gradient all-reduce"
      case .optimizer: return "optimizer step"
      case .driftCheck: return "drift check"
      case .stopCheck: return "stop-signal all-reduce"
      case .checkpoint: return "checkpoint (replica check, rank 0's write, status broadcast)"
      case .finish: return "end-of-run barrier"
      }
    }
  }

  public let timeout: Double
  public let interval: Double
  let rank: Int
  let size: Int
  private var side: MPI_Comm?
  private let world: MPI_Comm
  private let lock = NSLock()
  private var armed = false
  private var since = 0.0
  private var step = 0
  private var micro = 0
  private var phase = Phase.load
  private var bucket = -1
  private var stopping = false
  private let exited = DispatchSemaphore(value: 0)
  private var running = true
  private var reportSink: @Sendable (String) -> Void = {
    FileHandle.standardError.write(Data(($0 + "\n").utf8))
  }
  /// Where the report goes (stderr by default; tests may capture). Called on the watchdog
  /// thread.
  public var report: @Sendable (String) -> Void {
    get { lock.withLock { reportSink } }
    set { lock.withLock { reportSink = newValue } }
  }

  static let queryTag: Int32 = 701
  static let replyTag: Int32 = 702

  /// - Parameters:
  ///   - timeout: seconds a rank may stay in one phase.
  ///   - interval: how often the thread looks (and answers queries).
  /// - Throws: `DistError.threadLevelUnavailable` without `MPI_THREAD_MULTIPLE`; `MPIError`.
  public init(communicator: Communicator, timeout: Double, interval: Double = 0.1) throws {
    try communicator.ensureLive()
    guard communicator.providedThreadLevel >= cmpi_thread_multiple() else {
      throw DistError.threadLevelUnavailable(
        requested: .multiple, provided: communicator.providedThreadLevel)
    }
    self.timeout = timeout
    self.interval = interval
    rank = communicator.rank
    size = communicator.size
    world = communicator.comm
    var dup: MPI_Comm? = nil
    try mpiCheck("MPI_Comm_dup", MPI_Comm_dup(communicator.comm, &dup))
    try mpiCheck("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(dup, cmpi_errors_return()))
    side = dup
    let t = Thread { [unowned self] in self.loop() }
    t.name = "parallax-watchdog"
    t.start()
  }

  deinit { stop() }

  /// Stops the thread and waits for it to exit (within `interval`); call before
  /// `MPI_Finalize`. Idempotent.
  public func stop() {
    lock.lock()
    stopping = true
    let wasRunning = running
    running = false
    lock.unlock()
    if wasRunning { exited.wait() }
  }

  /// The training thread enters `phase` of `step` (micro-batch `micro`); the clock restarts.
  public func mark(step: Int, micro: Int = 0, _ phase: Phase, bucket: Int = -1) {
    lock.lock()
    self.step = step
    self.micro = micro
    self.phase = phase
    self.bucket = bucket
    since = now()
    armed = true
    lock.unlock()
  }

  /// Between steps (checkpoints, logging): nothing is watched.
  public func disarm() {
    lock.lock()
    armed = false
    lock.unlock()
  }

  private func state() -> [Int64] {
    [Int64(rank), Int64(step), Int64(micro), Int64(phase.rawValue), Int64(bucket)]
  }

  private func loop() {
    while true {
      sleepSeconds(interval)
      lock.lock()
      let stop = stopping
      let fire = armed && now() - since > timeout
      let mine = state()
      let waited = now() - since
      lock.unlock()
      if stop {
        exited.signal()
        return
      }
      serveQueries()
      if fire { fireAndAbort(mine, waited: waited) }
    }
  }

  /// Answers every pending "where are you?" with this rank's marker.
  private func serveQueries() {
    while true {
      var flag: Int32 = 0
      var status = MPI_Status()
      guard MPI_Iprobe(MPI_ANY_SOURCE, Self.queryTag, side, &flag, &status) == cmpi_success(),
        flag != 0
      else { return }
      var dummy: Int64 = 0
      _ = MPI_Recv(&dummy, 1, cmpi_int64(), status.MPI_SOURCE, Self.queryTag, side, &status)
      lock.lock()
      var reply = state()
      lock.unlock()
      _ = MPI_Send(&reply, Int32(reply.count), cmpi_int64(), status.MPI_SOURCE, Self.replyTag, side)
    }
  }

  /// Says at once that this rank stalled (the transport may end the job while the others
  /// are asked: a peer behind a cut link makes TCP give up on the socket after its retries),
  /// asks every other rank where it is for up to `min(5, timeout / 2)` s (at least 1 s), then
  /// reports who has not arrived and aborts the job with status 3.
  private func fireAndAbort(_ mine: [Int64], waited: Double) -> Never {
    let ask = min(5, max(1, timeout / 2))
    let head = String(
      format: "[rank %d] stall watchdog: waited %.1f s (timeout %.0f s) in %@", rank, waited,
      timeout, describe(mine))
    report(head + String(format: "; asking the other ranks where they are (up to %.0f s).", ask))
    var query: Int64 = 0
    for q in 0..<size where q != rank {
      _ = MPI_Send(&query, 1, cmpi_int64(), Int32(q), Self.queryTag, side)
    }
    var replies: [Int: [Int64]] = [:]
    let deadline = now() + ask
    while replies.count < size - 1 && now() < deadline {
      serveQueries()
      var flag: Int32 = 0
      var status = MPI_Status()
      if MPI_Iprobe(MPI_ANY_SOURCE, Self.replyTag, side, &flag, &status) == cmpi_success(),
        flag != 0
      {
        var r = [Int64](repeating: 0, count: 5)
        _ = MPI_Recv(&r, 5, cmpi_int64(), status.MPI_SOURCE, Self.replyTag, side, &status)
        replies[Int(status.MPI_SOURCE)] = r
      } else {
        sleepSeconds(0.01)
      }
    }
    func key(_ s: [Int64]) -> [Int64] { [s[1], s[2], s[3]] }
    let behind = replies.filter { key($0.value).lexicographicallyPrecedes(key(mine)) }
      .sorted { $0.key < $1.key }
    let silent = (0..<size).filter { $0 != rank && replies[$0] == nil }
    var text = head + "."
    if behind.isEmpty && silent.isEmpty {
      // The others are ahead, waiting for this rank: let one of them report (it names this
      // rank and the collective it waits in); abort here only if none does.
      let grace = now() + max(5, timeout)
      while now() < grace {
        serveQueries()
        sleepSeconds(0.05)
      }
      text += " No other rank is behind: this rank is the one holding the job up."
    } else {
      let list = behind.map { "rank \($0.key) (at \(describe($0.value)))" }
        + silent.map { "rank \($0) (no answer)" }
      text += " Ranks that have not arrived: " + list.joined(separator: "; ") + "."
    }
    text += " Aborting the job."
    report(text)
    _ = MPI_Abort(world, 3)
    exit(3)
  }

  /// "step 6, gradient all-reduce, bucket 0" for a marker `[rank, step, micro, phase, bucket]`.
  private func describe(_ s: [Int64]) -> String {
    let p = Phase(rawValue: Int(s[3])) ?? .load
    var d = "step \(s[1] + 1)"
    if s[2] > 0 { d += " micro-batch \(s[2] + 1)" }
    d += ", \(p)"
    if p == .gradientSync && s[4] >= 0 { d += ", bucket \(s[4])" }
    return d
  }
}
