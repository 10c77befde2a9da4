import Dist
import Model
import XCTest

/// In-process tests: this process is not started by `mpirun`, so `Communicator.world()` is
/// Open MPI's singleton world of one rank. MPI can be initialised once per process and all
/// tests share the process, so they share the cached world and never finalize it.
final class CommunicatorTests: XCTestCase {
  func testSingletonWorldIsRankZeroOfOne() throws {
    let world = try Communicator.world()
    XCTAssertEqual(world.rank, 0)
    XCTAssertEqual(world.size, 1)
    XCTAssertEqual(world.localRank, 0)
    XCTAssertEqual(world.localSize, 1)
    XCTAssertEqual(world.nodeCount, 1)
    XCTAssertFalse(world.processorName.isEmpty)
    XCTAssertTrue(try Communicator.world() === world, "the world is created once and cached")
  }

  func testThreadLevelAboveProvidedThrows() throws {
    let world = try Communicator.world()
    if world.providedThreadLevel >= 3 {  // MPI_THREAD_MULTIPLE
      XCTAssertTrue(try Communicator.world(threadLevel: .multiple) === world)
    } else {
      XCTAssertThrowsError(try Communicator.world(threadLevel: .multiple)) { error in
        XCTAssertEqual(
          error as? DistError,
          .threadLevelUnavailable(requested: .multiple, provided: world.providedThreadLevel))
      }
    }
  }

  func testSingletonCollectivesAreIdentity() throws {
    let world = try Communicator.world()
    for op in [ReduceOp.sum, .average, .max, .min] {
      var x: [Float] = [1.5, -2, 3]
      try world.allReduce(&x, count: 3, op: op)
      XCTAssertEqual(x, [1.5, -2, 3], "\(op)")
    }
    var d: [Double] = [0.25, 7]
    try world.allReduce(&d, count: 2, op: .max)
    XCTAssertEqual(d, [0.25, 7])
    var i: [Int64] = [1 << 40, -3]
    try world.allReduce(&i, count: 2, op: .sum)
    XCTAssertEqual(i, [1 << 40, -3])
    XCTAssertEqual(try world.allReduce(Int64(5), op: .max), 5)

    var gathered: [Float] = [0, 0]
    try world.allGather([4, 5], count: 2, into: &gathered)
    XCTAssertEqual(gathered, [4, 5])
    var gatheredToRoot: [Float] = [0]
    try world.gather([9], count: 1, into: &gatheredToRoot, root: 0)
    XCTAssertEqual(gatheredToRoot, [9])

    var b: [Float] = [3, 1, 4]
    try world.broadcast(&b, count: 3, from: 0)
    XCTAssertEqual(b, [3, 1, 4])
    XCTAssertEqual(try world.broadcast(string: "héllo", from: 0), "héllo")
    XCTAssertEqual(try world.broadcast(bytes: [], from: 0), [])
    XCTAssertEqual(try world.gatherVariable(bytes: [1, 2, 3], root: 0), [[1, 2, 3]])
    XCTAssertEqual(try world.gatherVariable(bytes: [], root: 0), [[]])
    try world.barrier()
  }

  func testCollectiveProtocolForwards() throws {
    let c: Collective = try Communicator.world()
    var f: [Float] = [2, 3]
    try c.allReduceSum(&f, count: 2)
    XCTAssertEqual(f, [2, 3])
    var out: [Float] = [0]
    try c.allGather([8], count: 1, into: &out)
    XCTAssertEqual(out, [8])
  }

  func testNonblockingAllReduceCompletesInScope() throws {
    let world = try Communicator.world()
    var x: [Float] = (0..<1000).map(Float.init)
    var escaped: Request?
    try x.withUnsafeMutableBufferPointer { buffer in
      try world.withIAllReduce(buffer.baseAddress!, count: 1000, op: .average) { request in
        escaped = request
        try request.wait()
        XCTAssertTrue(try request.test())
      }
    }
    XCTAssertEqual(x, (0..<1000).map(Float.init))
    XCTAssertEqual(escaped?.isComplete, true, "a request is complete once its scope ends")

    var leakedScope: RequestScope?
    try x.withUnsafeMutableBufferPointer { buffer in
      try world.withRequests { scope in
        leakedScope = scope
        _ = try scope.iAllReduce(buffer.baseAddress!, count: 500)
        _ = try scope.iAllReduce(buffer.baseAddress! + 500, count: 500)
      }
    }
    XCTAssertThrowsError(try leakedScope!.iAllReduce(&x, count: 1)) { error in
      XCTAssertEqual(error as? DistError, .requestScopeClosed)
    }
  }

  func testInvalidRootThrowsMPIErrorWithMPIString() throws {
    let world = try Communicator.world()
    var x: Float = 1
    XCTAssertThrowsError(try world.broadcast(&x, count: 1, from: world.size)) { error in
      guard let error = error as? MPIError else { return XCTFail("not an MPIError: \(error)") }
      XCTAssertEqual(error.call, "MPI_Bcast")
      XCTAssertNotEqual(error.code, 0)
      // Open MPI: "MPI_ERR_ROOT: invalid root"; MPICH words it differently.
      XCTAssertTrue(error.message.lowercased().contains("root"), error.message)
      XCTAssertTrue(error.description.contains(error.message))
      XCTAssertTrue(error.description.contains("MPI_Bcast"))
    }
    XCTAssertThrowsError(try world.gather([1], count: 1, into: nil, root: 7)) { error in
      XCTAssertEqual((error as? MPIError)?.call, "MPI_Gather")
    }
    // The communicator still works after an error.
    var y: [Float] = [6]
    try world.allReduce(&y, count: 1)
    XCTAssertEqual(y, [6])
  }

  func testMisuseThrowsDistError() throws {
    let world = try Communicator.world()
    XCTAssertThrowsError(try world.gather([1], count: 1, into: nil, root: 0)) { error in
      XCTAssertEqual(error as? DistError, .missingReceiveBuffer(call: "MPI_Gather"))
    }
    var i: Int64 = 1
    XCTAssertThrowsError(try world.allReduce(&i, count: 1, op: .average)) { error in
      XCTAssertEqual(error as? DistError, .unsupportedReduction("average of Int64"))
    }
    let f: [Float] = [0]
    var g: [Float] = [0]
    XCTAssertThrowsError(try world.allGather(f, count: -1, into: &g)) { error in
      XCTAssertEqual(error as? DistError, .countTooLarge(call: "MPI_Allgather", count: -1))
    }
  }
}
