import Foundation
import XCTest

@testable import Data

/// The swift-system file helpers turn `Errno` into `DataError`s that name the file.
final class FileDescriptorErrorTests: XCTestCase {
  func testMissingShardIsFileNotFoundNamingIt() {
    let path = NSTemporaryDirectory() + "parallax-missing-\(UUID().uuidString).pxrs"
    XCTAssertThrowsError(try RecordShard(path: path)) { error in
      guard case DataError.fileNotFound(let p, _) = error else { return XCTFail("\(error)") }
      XCTAssertEqual(p, path)
    }
  }

  func testReadingADirectoryNamesItAndTheOperation() throws {
    let dir = NSTemporaryDirectory() + "parallax-dir-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    XCTAssertThrowsError(try Gzip.decompress(path: dir)) { error in
      guard case DataError.io(let p, let op, let reason) = error else { return XCTFail("\(error)") }
      XCTAssertEqual(p, dir)
      XCTAssertEqual(op, "pread")
      XCTAssertEqual(reason, "Is a directory")
    }
  }

  func testWriterInMissingDirectoryNamesTheTemporaryFile() {
    let path = "/nonexistent-parallax-dir/x.pxrs"
    XCTAssertThrowsError(try RecordShardWriter(path: path, channels: 1, height: 2, width: 2)) { error in
      guard case DataError.io(let p, let op, let reason) = error else { return XCTFail("\(error)") }
      XCTAssertTrue(p.hasPrefix(path + ".tmp."), p)
      XCTAssertEqual(op, "create")
      XCTAssertEqual(reason, "No such file or directory")
    }
  }
}
