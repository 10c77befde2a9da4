import CMPI
import Foundation
import Model
import Synchronization

/// The ranks of one MPI job and the collectives the trainer runs over them.
///
/// Obtain it with `Communicator.world()`. Started under `mpirun`/`srun` it is the job's
/// `MPI_COMM_WORLD`; started alone it is a world of one rank through Open MPI's singleton
/// initialisation (measured at about 0.35 s here), so a single process needs no launcher.
/// Errors come back as thrown `MPIError`s: the communicator uses `MPI_ERRORS_RETURN`.
///
/// Every rank must issue the same collectives in the same order (DESIGN invariant 2).
/// With `.funneled` only the thread that initialised MPI may call into it.
///
/// `@unchecked Sendable`: the MPI handles are immutable after `init`, the finalized state is
/// an atomic and the process-wide state a mutex; which threads may call MPI at all is the
/// thread level's business (MPI's rule, not one the compiler can see).
public final class Communicator: Collective, @unchecked Sendable {
  /// How many threads may call MPI (`MPI_Init_thread`'s `required`).
  public enum ThreadLevel: Sendable, Equatable, CustomStringConvertible {
    /// Only the main (initialising) thread calls MPI.
    case funneled
    /// Any thread may call MPI at any time.
    case multiple

    var mpiValue: Int32 {
      switch self {
      case .funneled: return cmpi_thread_funneled()
      case .multiple: return cmpi_thread_multiple()
      }
    }

    public var description: String {
      switch self {
      case .funneled: return "MPI_THREAD_FUNNELED"
      case .multiple: return "MPI_THREAD_MULTIPLE"
      }
    }
  }

  /// This process's rank in the world, `0..<size`.
  public let rank: Int
  /// Number of ranks in the world.
  public let size: Int
  /// This process's rank among the ranks on its node (`MPI_COMM_TYPE_SHARED`).
  public let localRank: Int
  /// Number of ranks on this process's node.
  public let localSize: Int
  /// Number of distinct nodes in the world.
  public let nodeCount: Int
  /// `MPI_Get_processor_name`: normally the host name.
  public let processorName: String
  /// The thread level MPI provided (`MPI_THREAD_*`).
  public let providedThreadLevel: Int32

  /// The world communicator.
  let comm: MPI_Comm
  /// The ranks sharing this node's memory; freed by `finalize()`.
  private let localComm: MPI_Comm?
  /// Set once by `finalize()`; read by every collective.
  private let isFinalized = Atomic<Bool>(false)

  // MPI can be initialised only once per process, so the world is created once and cached.
  private struct ProcessState {
    var world: Communicator?
    var finalized = false
  }
  private static let process = Mutex(ProcessState())

  /// The world of this job, initialising MPI on first use.
  ///
  /// Calls `MPI_Init_thread` unless MPI is already initialised, then sets
  /// `MPI_ERRORS_RETURN` on the world. Later calls return the same communicator.
  /// - Parameter threadLevel: the thread support the caller needs.
  /// - Throws: `MPIError` if an MPI call fails; `DistError.threadLevelUnavailable` if MPI
  ///   provides less than `threadLevel`; `DistError.finalized` after `finalize()`.
  public static func world(threadLevel: ThreadLevel = .funneled) throws -> Communicator {
    try process.withLock { state throws -> Communicator in
    if state.finalized { throw DistError.finalized }
    if let world = state.world {
      guard world.providedThreadLevel >= threadLevel.mpiValue else {
        throw DistError.threadLevelUnavailable(
          requested: threadLevel, provided: world.providedThreadLevel)
      }
      return world
    }

    var initialized: Int32 = 0
    try mpiCheck("MPI_Initialized", MPI_Initialized(&initialized))
    var finalized: Int32 = 0
    try mpiCheck("MPI_Finalized", MPI_Finalized(&finalized))
    if finalized != 0 {
      state.finalized = true
      throw DistError.finalized
    }
    var provided: Int32 = 0
    if initialized == 0 {
      try mpiCheck("MPI_Init_thread", MPI_Init_thread(nil, nil, threadLevel.mpiValue, &provided))
    } else {
      try mpiCheck("MPI_Query_thread", MPI_Query_thread(&provided))
    }
    guard provided >= threadLevel.mpiValue else {
      throw DistError.threadLevelUnavailable(requested: threadLevel, provided: provided)
    }
    let world = try Communicator(comm: cmpi_comm_world(), providedThreadLevel: provided)
    state.world = world
    return world
    }
  }

  /// Whether `comm` was made by `split` (and is freed by `free()`), not the world.
  private let ownsComm: Bool

  private init(comm: MPI_Comm, providedThreadLevel: Int32, owned: Bool = false) throws {
    ownsComm = owned
    // Errors as return codes, not aborts: on the world and on SELF (which MPI uses for
    // errors that belong to no communicator).
    try mpiCheck("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(comm, cmpi_errors_return()))
    try mpiCheck(
      "MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(cmpi_comm_self(), cmpi_errors_return()))
    self.comm = comm
    self.providedThreadLevel = providedThreadLevel

    var rank: Int32 = 0
    var size: Int32 = 0
    try mpiCheck("MPI_Comm_rank", MPI_Comm_rank(comm, &rank))
    try mpiCheck("MPI_Comm_size", MPI_Comm_size(comm, &size))
    self.rank = Int(rank)
    self.size = Int(size)

    var local: MPI_Comm? = nil
    try mpiCheck(
      "MPI_Comm_split_type",
      MPI_Comm_split_type(comm, cmpi_comm_type_shared(), rank, cmpi_info_null(), &local))
    try mpiCheck("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(local, cmpi_errors_return()))
    var localRank: Int32 = 0
    var localSize: Int32 = 0
    try mpiCheck("MPI_Comm_rank", MPI_Comm_rank(local, &localRank))
    try mpiCheck("MPI_Comm_size", MPI_Comm_size(local, &localSize))
    self.localComm = local
    self.localRank = Int(localRank)
    self.localSize = Int(localSize)

    // One leader (local rank 0) per node: their count is the node count.
    var leaders: Int32 = localRank == 0 ? 1 : 0
    try mpiCheck(
      "MPI_Allreduce",
      MPI_Allreduce(cmpi_in_place(), &leaders, 1, cmpi_int32(), cmpi_op_sum(), comm))
    self.nodeCount = Int(leaders)

    var name = [CChar](repeating: 0, count: Int(cmpi_max_processor_name()) + 1)
    var nameLength: Int32 = 0
    try mpiCheck("MPI_Get_processor_name", MPI_Get_processor_name(&name, &nameLength))
    self.processorName = String(
      decoding: name.prefix(Int(nameLength)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  /// Throws `DistError.finalized` once `finalize()` has run.
  @inline(__always)
  func ensureLive() throws {
    if isFinalized.load(ordering: .acquiring) { throw DistError.finalized }
  }

  /// Blocks until every rank has called `barrier()`.
  public func barrier() throws {
    try ensureLive()
    try mpiCheck("MPI_Barrier", MPI_Barrier(comm))
  }

  /// Ends the whole job: `MPI_Abort` kills every rank, so none is left waiting in a
  /// collective for a rank that failed. For the command line's error path, not for
  /// library code (DESIGN invariant 7).
  public func abort(code: Int32 = 1) -> Never {
    _ = MPI_Abort(comm, code)
    // MPI_Abort does not return; if an implementation's does, still end this process.
    exit(code)
  }

  /// `MPI_Comm_split`: the ranks that pass the same `color` form one new communicator, ranked
  /// by `key` (ties by their rank here). Collective over this communicator. The groups of a
  /// sweep each train one point, data-parallel inside (DESIGN.md, Sweeps).
  /// - Returns: this rank's group; `free()` it before `finalize()` of the world.
  public func split(color: Int, key: Int) throws -> Communicator {
    try ensureLive()
    // Programmer errors (the caller computes both from rank counts): trap.
    guard color >= 0, let c = Int32(exactly: color), let k = Int32(exactly: key) else {
      preconditionFailure("split: color \(color) must be in 0…Int32.max and key \(key) an Int32")
    }
    var sub: MPI_Comm? = nil
    try mpiCheck("MPI_Comm_split", MPI_Comm_split(comm, c, k, &sub))
    return try Communicator(comm: sub!, providedThreadLevel: providedThreadLevel, owned: true)
  }

  /// Frees a communicator made by `split` (collective over its ranks); afterwards its
  /// collectives throw. The world is ended by `finalize()` instead.
  public func free() throws {
    precondition(ownsComm, "the world is ended by finalize(), not freed")
    if isFinalized.exchange(true, ordering: .acquiringAndReleasing) { return }
    var local = localComm
    if local != nil { try mpiCheck("MPI_Comm_free", MPI_Comm_free(&local)) }
    var own: MPI_Comm? = comm
    try mpiCheck("MPI_Comm_free", MPI_Comm_free(&own))
  }

  /// Frees the node communicator and calls `MPI_Finalize`. Idempotent. Every rank must
  /// call it; afterwards no MPI call can be made in this process (`world()` and every
  /// collective throw `DistError.finalized`).
  public func finalize() throws {
    try Communicator.process.withLock { state in
      if isFinalized.load(ordering: .acquiring) { return }
      isFinalized.store(true, ordering: .releasing)
      state.finalized = true
      state.world = nil
      var local = localComm
      if local != nil {
        try mpiCheck("MPI_Comm_free", MPI_Comm_free(&local))
      }
      var finalized: Int32 = 0
      try mpiCheck("MPI_Finalized", MPI_Finalized(&finalized))
      if finalized == 0 {
        try mpiCheck("MPI_Finalize", MPI_Finalize())
      }
    }
  }
}
