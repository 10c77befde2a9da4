import Foundation
import XCTest

@testable import Data

/// Shared fixtures for the Data tests.
enum TestSupport {
  static let fashionDirectory = FashionMNIST.defaultDirectory

  /// The Fashion-MNIST test split, loaded once.
  static let testSplit: ImageDataset = {
    do { return try FashionMNIST.load(split: .test) } catch { fatalError("\(error)") }
  }()

  /// A fresh temporary directory.
  static func makeTempDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory
      .appendingPathComponent("parallax-data-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }

  static func write(_ bytes: [UInt8], to path: String) throws {
    try Foundation.Data(bytes).write(to: URL(fileURLWithPath: path))
  }

  static func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
  }

  /// Runs `body`, expecting a `DataError` whose description contains every string of `needles`.
  static func assertThrowsDataError(
    _ needles: [String], file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> Void
  ) {
    do {
      try body()
      XCTFail("expected a DataError containing \(needles)", file: file, line: line)
    } catch let error as DataError {
      for needle in needles {
        XCTAssertTrue(
          error.description.contains(needle), "\"\(error)\" does not contain \"\(needle)\"",
          file: file, line: line)
      }
    } catch {
      XCTFail("expected a DataError, got \(error)", file: file, line: line)
    }
  }
}
