import Foundation
import XCTest

@testable import Data

/// Fashion-MNIST packed into a cached record shard and read by offset must serve exactly the
/// bytes and labels of the IDX files, reuse the packed copy, and repack a damaged one.
final class FashionMNISTShardTests: XCTestCase {
  func testShardServesTheIDXPixelsAndLabelsAndIsReused() throws {
    let cache = try TestSupport.makeTempDirectory() + "/cache/nested"
    let shard = try FashionMNIST.shard(split: .test, cacheDirectory: cache)
    let ds = TestSupport.testSplit
    XCTAssertEqual(shard.count, ds.count)
    XCTAssertEqual([shard.channels, shard.height, shard.width], [1, 28, 28])
    var px = [UInt8](repeating: 0, count: 784)
    var mismatches = 0
    for i in 0..<ds.count {
      try shard.pixels(i, into: &px)
      if px[...] != ds.image(i) || shard.label(i) != ds.label(i) { mismatches += 1 }
    }
    XCTAssertEqual(mismatches, 0)

    let path = try FashionMNIST.shardPath(split: .test, directory: FashionMNIST.defaultDirectory, cacheDirectory: cache)
    XCTAssertEqual(shard.shard.path, path)
    let before = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as! Date
    _ = try FashionMNIST.shard(split: .test, cacheDirectory: cache)
    let after = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as! Date
    XCTAssertEqual(before, after, "the cached shard was packed again")

    // A damaged copy (truncated) is packed again rather than refused or half-read.
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try h.truncate(atOffset: 1000)
    try h.close()
    let again = try FashionMNIST.shard(split: .test, cacheDirectory: cache)
    try again.pixels(ds.count - 1, into: &px)
    XCTAssertEqual(px[...], ds.image(ds.count - 1))
  }

  func testMissingFilesStillSayHowToInstall() {
    TestSupport.assertThrowsDataError(["/nonexistent/fmnist", "dataset-fashion-mnist"]) {
      _ = try FashionMNIST.shard(split: .train, directory: "/nonexistent/fmnist", cacheDirectory: NSTemporaryDirectory())
    }
  }

  /// Clean image and audio inputs come through the one `EvalSource` protocol with label slots.
  func testEvalSourceSlots() throws {
    let ds = try TestSupport.testSplit.subset(0..<5)
    let e: EvalSource = EvalBatchLoader(source: ds, classNames: FashionMNIST.classNames)
    XCTAssertEqual(e.labelSlots.map(\.name), ["class"])
    XCTAssertEqual(e.labelSlots[0].classCount, 10)
    XCTAssertEqual(e.inputShape, InputShape(channels: 1, height: 28, width: 28))
    XCTAssertEqual(e.labels(indices: 0..<5), (0..<5).map { ds.label($0) })
    XCTAssertEqual(EvalBatchLoader(source: ds).labelSlots[0].classCount, ((0..<5).map { ds.label($0) }.max() ?? 0) + 1)
  }
}
