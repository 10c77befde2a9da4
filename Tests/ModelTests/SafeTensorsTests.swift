import Foundation
import Model
import XCTest

/// PyTorch reference fixtures, copied from ../shared/fixtures into Tests/Fixtures so a fresh
/// clone (CI) has them.
enum Fixtures {
  static let directory: URL = {
    if let env = ProcessInfo.processInfo.environment["PARALLAX_FIXTURES"] {
      return URL(fileURLWithPath: env)
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent()  // ModelTests
      .deletingLastPathComponent()  // Tests
      .appendingPathComponent("Fixtures")
  }()

  static func load(_ name: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(directory.appendingPathComponent("\(name).safetensors")).entries
  }
}

final class SafeTensorsTests: XCTestCase {
  func testRoundTrip() throws {
    let e = [
      SafeTensors.Entry(name: "a.weight", shape: [2, 3], values: [1, 2, 3, 4, 5, -6.5]),
      SafeTensors.Entry(name: "b", shape: [1], values: [.pi]),
    ]
    let data = SafeTensors.encode(e, metadata: ["step": "3"])
    let (back, meta) = try SafeTensors.decode(data, path: "mem")
    XCTAssertEqual(back["a.weight"], e[0])
    XCTAssertEqual(back["b"], e[1])
    XCTAssertEqual(meta["step"], "3")
  }

  func testTruncatedFileNamesPath() throws {
    let data = SafeTensors.encode([SafeTensors.Entry(name: "w", shape: [4], values: [1, 2, 3, 4])])
    XCTAssertThrowsError(try SafeTensors.decode(data.prefix(data.count - 3), path: "/x/model.safetensors")) {
      XCTAssertTrue("\($0)".contains("/x/model.safetensors"), "\($0)")
    }
  }

  func testReadsPyTorchFixture() throws {
    let t = try Fixtures.load("linear")
    XCTAssertFalse(t.isEmpty)
    for (_, e) in t { XCTAssertEqual(e.values.count, e.shape.reduce(1, *)) }
  }
}
