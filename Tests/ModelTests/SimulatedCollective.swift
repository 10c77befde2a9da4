import Foundation
import Model
import XCTest

/// W simulated ranks in one process, for testing rank-count invariance without MPI: each
/// rank runs on its own thread with its own `SimulatedCollective`; collectives meet at a
/// barrier, read every rank's contribution from shared slots, and combine them in rank
/// order, so all ranks get bit-identical results, as an MPI allreduce would give them.
final class SimulatedWorld: @unchecked Sendable {
  let size: Int
  private let condition = NSCondition()
  private var arrived = 0
  private var generation = 0
  fileprivate var floatSlots: [[Float]]
  fileprivate var doubleSlots: [[Double]]
  /// Calls made by each rank, in order (to check that ranks issue the same sequence).
  fileprivate(set) var log: [[String]]
  /// When true, float all-reduces do nothing: the "keep only the local slice" bug of
  /// lightly issue 1528, used to show that the rank-invariance test can fail.
  let skipFloatAllReduce: Bool

  init(size: Int, skipFloatAllReduce: Bool = false) {
    self.size = size
    self.skipFloatAllReduce = skipFloatAllReduce
    floatSlots = Array(repeating: [], count: size)
    doubleSlots = Array(repeating: [], count: size)
    log = Array(repeating: [], count: size)
  }

  fileprivate func barrier() {
    condition.lock()
    let g = generation
    arrived += 1
    if arrived == size {
      arrived = 0
      generation += 1
      condition.broadcast()
    } else {
      while g == generation { condition.wait() }
    }
    condition.unlock()
  }

  fileprivate func record(_ rank: Int, _ s: String) {
    condition.lock()
    log[rank].append(s)
    condition.unlock()
  }

  /// Runs `body` once per rank, each on its own thread, and returns the results in rank
  /// order. Fails the test (instead of hanging) if the ranks do not finish in 60 s.
  func run<T>(_ body: @escaping (SimulatedCollective) throws -> T) throws -> [T] {
    let results = ResultSlots<T>(size)
    let lock = NSLock()
    let group = DispatchGroup()
    for r in 0..<size {
      group.enter()
      let comm = SimulatedCollective(world: self, rank: r)
      let t = Thread {
        let res = Result { try body(comm) }
        lock.lock()
        results.values[r] = res
        lock.unlock()
        group.leave()
      }
      t.stackSize = 8 << 20
      t.start()
    }
    guard group.wait(timeout: .now() + 60) == .success else {
      throw LayerShapeError(layer: "SimulatedWorld", reason: "ranks did not finish (deadlock?)")
    }
    return try results.values.map { try $0!.get() }
  }
}

final class SimulatedCollective: Collective {
  let world: SimulatedWorld
  let rank: Int
  var size: Int { world.size }

  init(world: SimulatedWorld, rank: Int) {
    self.world = world
    self.rank = rank
  }

  func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    world.record(rank, "allReduceSum(Float, \(count))")
    if world.skipFloatAllReduce { return }
    world.floatSlots[rank] = Array(UnsafeBufferPointer(start: buffer, count: count))
    world.barrier()
    for i in 0..<count {
      var s: Float = 0
      for r in 0..<world.size { s += world.floatSlots[r][i] }
      buffer[i] = s
    }
    world.barrier()
  }

  func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    world.record(rank, "allReduceSum(Double, \(count))")
    world.doubleSlots[rank] = Array(UnsafeBufferPointer(start: buffer, count: count))
    world.barrier()
    for i in 0..<count {
      var s: Double = 0
      for r in 0..<world.size { s += world.doubleSlots[r][i] }
      buffer[i] = s
    }
    world.barrier()
  }

  func allGather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>)
    throws
  {
    world.record(rank, "allGather(\(count))")
    world.floatSlots[rank] = Array(UnsafeBufferPointer(start: send, count: count))
    world.barrier()
    for r in 0..<world.size {
      guard world.floatSlots[r].count == count else {
        throw LayerShapeError(
          layer: "SimulatedCollective",
          reason: "rank \(r) gathers \(world.floatSlots[r].count), rank \(rank) \(count)")
      }
      world.floatSlots[r].withUnsafeBufferPointer {
        (recv + r * count).update(from: $0.baseAddress!, count: count)
      }
    }
    world.barrier()
  }
}

private final class ResultSlots<T>: @unchecked Sendable {
  var values: [Result<T, Error>?]
  init(_ n: Int) { values = Array(repeating: nil, count: n) }
}
