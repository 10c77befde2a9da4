import XCTest

@testable import Data

final class DistributedSamplerTests: XCTestCase {
  func testRanksPartitionEpoch() throws {
    let count = 1000, globalBatch = 64, world = 4
    let samplers = try (0..<world).map {
      try DistributedSampler(count: count, globalBatch: globalBatch, rank: $0, worldSize: world, seed: 5)
    }
    XCTAssertEqual(samplers[0].batchesPerEpoch, 15)
    XCTAssertEqual(samplers[0].localBatch, 16)
    var seen = Set<Int>()
    var total = 0
    for batch in 0..<samplers[0].batchesPerEpoch {
      var concatenated: [Int] = []
      for s in samplers {
        let local = try s.localIndices(epoch: 3, batch: batch)
        XCTAssertEqual(local.count, 16)
        concatenated += local
        seen.formUnion(local)
        total += local.count
      }
      XCTAssertEqual(concatenated, Array(try samplers[0].globalIndices(epoch: 3, batch: batch)))
    }
    XCTAssertEqual(total, 960)
    XCTAssertEqual(seen.count, 960)  // disjoint
    // Everything except the dropped tail of the permutation is covered.
    let order = samplers[0].epochOrder(3)
    XCTAssertEqual(Set(order), Set(0..<count))
    XCTAssertEqual(seen, Set(order.prefix(960)))
  }

  func testDeterministicPerEpoch() throws {
    let a = try DistributedSampler(count: 500, globalBatch: 50, seed: 11)
    let b = try DistributedSampler(count: 500, globalBatch: 50, seed: 11)
    XCTAssertEqual(a.epochOrder(2), b.epochOrder(2))
    XCTAssertEqual(try a.localIndices(epoch: 2, batch: 4), try b.localIndices(epoch: 2, batch: 4))
    XCTAssertNotEqual(a.epochOrder(2), a.epochOrder(3))
    let c = try DistributedSampler(count: 500, globalBatch: 50, seed: 12)
    XCTAssertNotEqual(a.epochOrder(2), c.epochOrder(2))
    XCTAssertNotEqual(a.epochOrder(0), Array(0..<500))
    // The cache does not leak between epochs.
    let e2 = a.epochOrder(2)
    _ = a.epochOrder(7)
    XCTAssertEqual(a.epochOrder(2), e2)
  }

  func testNoShuffle() throws {
    let s = try DistributedSampler(count: 10, globalBatch: 4, rank: 1, worldSize: 2, seed: 0, shuffle: false)
    XCTAssertEqual(try s.localIndices(epoch: 9, batch: 1), [6, 7])
  }

  func testBadConfigurationsThrow() {
    TestSupport.assertThrowsDataError(["divisible", "3"]) {
      _ = try DistributedSampler(count: 100, globalBatch: 10, rank: 0, worldSize: 3, seed: 0)
    }
    TestSupport.assertThrowsDataError(["larger", "100"]) {
      _ = try DistributedSampler(count: 100, globalBatch: 128, seed: 0)
    }
    TestSupport.assertThrowsDataError(["rank"]) {
      _ = try DistributedSampler(count: 100, globalBatch: 10, rank: 2, worldSize: 2, seed: 0)
    }
    TestSupport.assertThrowsDataError(["batch index 10"]) {
      let s = try DistributedSampler(count: 100, globalBatch: 10, seed: 0)
      _ = try s.localIndices(epoch: 0, batch: 10)
    }
  }

  func testEvaluationRangesCoverOnce() {
    for world in 1...5 {
      let ranges = (0..<world).map { DistributedSampler.evaluationRange(count: 103, rank: $0, worldSize: world) }
      XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<103))
      XCTAssertLessThanOrEqual(ranges.map(\.count).max()! - ranges.map(\.count).min()!, 1)
    }
  }
}
