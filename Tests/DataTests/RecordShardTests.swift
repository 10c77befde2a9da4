import Foundation
import XCTest

@testable import Data

final class RecordShardTests: XCTestCase {
  func makeShard(count: Int = 300) throws -> (ImageDataset, String) {
    let subset = try TestSupport.testSplit.subset(0..<count)
    let path = "\(try TestSupport.makeTempDirectory())/test.pxrs"
    try RecordShardWriter.pack(subset, to: path)
    return (subset, path)
  }

  func testRoundTrip() throws {
    let (ds, path) = try makeShard()
    let shard = try RecordShard(path: path)
    XCTAssertEqual(shard.count, 300)
    XCTAssertEqual(shard.header.channels, 1)
    XCTAssertEqual(shard.header.height, 28)
    XCTAssertEqual(shard.header.width, 28)
    XCTAssertEqual(shard.recordSize, 1 + 784)
    // No temporary file is left behind.
    let dir = (path as NSString).deletingLastPathComponent
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["test.pxrs"])

    let record = UnsafeMutablePointer<UInt8>.allocate(capacity: shard.recordSize)
    defer { record.deallocate() }
    var rng = KeyedRandom(seed: 7, epoch: 0, sample: 0, purpose: .evaluation)
    for _ in 0..<100 {
      let i = rng.nextInt(below: ds.count)
      try shard.read(index: i, into: record)
      XCTAssertEqual(Int(record[0]), ds.label(i))
      XCTAssertEqual(Array(UnsafeBufferPointer(start: record + 1, count: 784)), Array(ds.image(i)))
      XCTAssertEqual(shard.label(i), ds.label(i))
    }

    let source = try ShardImageSource(path: path)
    XCTAssertEqual(source.allLabels(), ds.allLabels())
    let px = UnsafeMutablePointer<UInt8>.allocate(capacity: 784)
    defer { px.deallocate() }
    for i in [0, 1, 150, 299] {
      try source.pixels(i, into: px)
      XCTAssertEqual(Array(UnsafeBufferPointer(start: px, count: 784)), Array(ds.image(i)))
    }
    TestSupport.assertThrowsDataError([path, "300"]) { try source.pixels(300, into: px) }
  }

  func testTruncatedShardIsRefused() throws {
    let (_, path) = try makeShard(count: 20)
    let bytes = try TestSupport.readBytes(path)
    let cut = path + ".cut"
    try TestSupport.write(Array(bytes.prefix(bytes.count - 500)), to: cut)
    TestSupport.assertThrowsDataError([cut, "truncated"]) { _ = try RecordShard(path: cut) }
    let headerOnly = path + ".head"
    try TestSupport.write(Array(bytes.prefix(10)), to: headerOnly)
    TestSupport.assertThrowsDataError([headerOnly, "truncated"]) { _ = try RecordShard(path: headerOnly) }
  }

  func testBadMagicAndTrailingBytesAreRefused() throws {
    let (_, path) = try makeShard(count: 5)
    var bytes = try TestSupport.readBytes(path)
    let longer = path + ".long"
    try TestSupport.write(bytes + [0], to: longer)
    TestSupport.assertThrowsDataError([longer]) { _ = try RecordShard(path: longer) }
    bytes[0] = UInt8(ascii: "X")
    let bad = path + ".bad"
    try TestSupport.write(bytes, to: bad)
    TestSupport.assertThrowsDataError([bad, "magic", "PXRS"]) { _ = try RecordShard(path: bad) }
    TestSupport.assertThrowsDataError([path + ".none"]) { _ = try RecordShard(path: path + ".none") }
  }

  func testMultiLabelWriter() throws {
    let path = "\(try TestSupport.makeTempDirectory())/multi.pxrs"
    let writer = try RecordShardWriter(path: path, channels: 2, height: 1, width: 3, labelCount: 3)
    try writer.append(labels: [1, 2, 3], payload: [10, 11, 12, 13, 14, 15])
    try writer.append(labels: [4, 5, 6], payload: [20, 21, 22, 23, 24, 25])
    TestSupport.assertThrowsDataError([path]) { try writer.append(labels: [1], payload: [0, 0, 0, 0, 0, 0]) }
    try writer.finish()
    let shard = try RecordShard(path: path)
    XCTAssertEqual(shard.count, 2)
    XCTAssertEqual(shard.label(1, slot: 2), 6)
    var record = [UInt8](repeating: 0, count: shard.recordSize)
    try record.withUnsafeMutableBufferPointer { try shard.read(index: 1, into: $0.baseAddress!) }
    XCTAssertEqual(record, [4, 5, 6, 20, 21, 22, 23, 24, 25])
    let source = try ShardImageSource(shard: shard, labelSlot: 1)
    XCTAssertEqual(source.label(0), 2)
    XCTAssertEqual(source.channels, 2)
  }

  func testAbandonedWriterLeavesNothing() throws {
    let dir = try TestSupport.makeTempDirectory()
    do {
      let writer = try RecordShardWriter(path: "\(dir)/x.pxrs", channels: 1, height: 2, width: 2)
      try writer.append(labels: [0], payload: [1, 2, 3, 4])
    }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
  }
}
