import XCTest

@testable import Data

final class BatchLoaderTests: XCTestCase {
  func load(_ source: ImageSource, rank: Int, world: Int, epoch: Int, batch: Int) throws -> [Float] {
    let sampler = try DistributedSampler(
      count: source.count, globalBatch: 8, rank: rank, worldSize: world, seed: 21)
    let loader = try ContrastiveBatchLoader(
      source: source, sampler: sampler, augment: SimCLRAugment(), seed: 99)
    var x = [Float](repeating: .nan, count: loader.floatsPerBatch)
    try x.withUnsafeMutableBufferPointer { try loader.load(epoch: epoch, batch: batch, into: $0.baseAddress!) }
    XCTAssertTrue(x.allSatisfy { $0.isFinite })
    return x
  }

  func testViewsIndependentOfRankCount() throws {
    let source = try TestSupport.testSplit.subset(0..<200)
    let n = 784
    let whole = try load(source, rank: 0, world: 1, epoch: 2, batch: 5)  // rows: 8 view1, 8 view2
    let half = try load(source, rank: 1, world: 2, epoch: 2, batch: 5)  // rows: 4 view1, 4 view2
    XCTAssertEqual(whole.count, 16 * n)
    XCTAssertEqual(half.count, 8 * n)
    for k in 0..<4 {
      // Rank 1 of 2 holds global rows 4..<8.
      XCTAssertEqual(half[k * n..<(k + 1) * n], whole[(4 + k) * n..<(5 + k) * n], "view 1 row \(k)")
      XCTAssertEqual(half[(4 + k) * n..<(5 + k) * n], whole[(12 + k) * n..<(13 + k) * n], "view 2 row \(k)")
    }
    // The two views of a sample differ.
    XCTAssertNotEqual(whole[0..<n], whole[8 * n..<9 * n])
  }

  func testShardAndMemorySourcesAgree() throws {
    let ds = try TestSupport.testSplit.subset(0..<64)
    let path = "\(try TestSupport.makeTempDirectory())/loader.pxrs"
    try RecordShardWriter.pack(ds, to: path)
    let shard = try ShardImageSource(path: path)
    XCTAssertEqual(try load(ds, rank: 0, world: 1, epoch: 0, batch: 3), try load(shard, rank: 0, world: 1, epoch: 0, batch: 3))

    let evalMemory = EvalBatchLoader(source: ds), evalShard = EvalBatchLoader(source: shard)
    var a = [Float](repeating: 0, count: 3 * 784), b = a
    try evalMemory.load(indices: [5, 0, 63], into: &a)
    try evalShard.load(indices: [5, 0, 63], into: &b)
    XCTAssertEqual(a, b)
    XCTAssertEqual(evalShard.labels(indices: [5, 0, 63]), [ds.label(5), ds.label(0), ds.label(63)])
    var expected = [Float](repeating: 0, count: 784)
    SimCLRAugment.normalize(Array(ds.image(63)), count: 784, into: &expected)
    XCTAssertEqual(Array(a[2 * 784..<3 * 784]), expected)
  }

  /// One (gray) or three (RGB) channels; anything else is refused.
  func testLoaderRejectsOtherThanOneOrThreeChannels() throws {
    let ds = try ImageDataset(count: 2, channels: 2, height: 2, width: 2, pixels: [UInt8](repeating: 0, count: 16), labels: [0, 1])
    let sampler = try DistributedSampler(count: 2, globalBatch: 2, seed: 0)
    TestSupport.assertThrowsDataError(["1- or 3-channel", "has 2"]) {
      _ = try ContrastiveBatchLoader(source: ds, sampler: sampler, augment: SimCLRAugment(), seed: 0)
    }
    let rgb = try ImageDataset(count: 2, channels: 3, height: 2, width: 2, pixels: [UInt8](repeating: 0, count: 24), labels: [0, 1])
    XCTAssertEqual(try ContrastiveBatchLoader(source: rgb, sampler: sampler, augment: SimCLRAugment(), seed: 0).transformCount, 6)
  }
}

final class PrefetchingBatchLoaderTests: XCTestCase {
  func testMatchesPlainLoader() throws {
    let source = try TestSupport.testSplit.subset(0..<40)
    func makeLoader() throws -> ContrastiveBatchLoader {
      let sampler = try DistributedSampler(count: 40, globalBatch: 16, rank: 1, worldSize: 2, seed: 4)
      return try ContrastiveBatchLoader(source: source, sampler: sampler, augment: SimCLRAugment(), seed: 8)
    }
    let plain = try makeLoader()
    let prefetching = PrefetchingBatchLoader(loader: try makeLoader())
    var a = [Float](repeating: 0, count: plain.floatsPerBatch), b = a
    // Two batches per epoch: crosses an epoch boundary, then jumps (as a resume would).
    for (epoch, batch) in [(0, 0), (0, 1), (1, 0), (1, 1), (5, 1), (6, 0), (6, 0)] {
      try plain.load(epoch: epoch, batch: batch, into: &a)
      try prefetching.load(epoch: epoch, batch: batch, into: &b)
      XCTAssertEqual(a, b, "epoch \(epoch) batch \(batch)")
    }
  }
}
