import Foundation
import XCTest

/// Tools some tests need beyond the build (`scripts/test-tools.sh` installs them; `scripts/test.sh`
/// runs it): rsvg-convert and a Python with the `tensorboard` package. When one is missing the
/// test says so loudly and skips — unless `PARALLAX_REQUIRE_TEST_TOOLS=1` (CI), where it fails.
enum TestTools {
  /// The repository root (this file is `Tests/TrainTests/TestTools.swift`).
  static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

  static var required: Bool { ProcessInfo.processInfo.environment["PARALLAX_REQUIRE_TEST_TOOLS"] == "1" }

  /// A Python that imports `tensorboard`: `PARALLAX_TEST_PYTHON`, else `.build/test-venv`.
  static func tensorboardPython() throws -> String {
    let env = ProcessInfo.processInfo.environment["PARALLAX_TEST_PYTHON"]
    for python in [env, repoRoot + "/.build/test-venv/bin/python"].compactMap({ $0 }) {
      guard FileManager.default.isExecutableFile(atPath: python) else { continue }
      if let r = try? Processes.run(python, ["-c", "import tensorboard"], timeout: 120), r.status == 0 { return python }
    }
    try unavailable("a Python with the tensorboard package (run `bash scripts/test-tools.sh`)")
  }

  static func rsvgConvert() throws -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/rsvg-convert") {
      return dir + "/rsvg-convert"
    }
    try unavailable("rsvg-convert (Debian librsvg2-bin; run `bash scripts/test-tools.sh`)")
  }

  static func unavailable(_ what: String) throws -> Never {
    let message = "TEST TOOL MISSING: \(what) — this test is SKIPPED, its checks did not run"
    FileHandle.standardError.write(Data("\n*** \(message) ***\n\n".utf8))
    if required {
      XCTFail("PARALLAX_REQUIRE_TEST_TOOLS=1 but \(what) is missing")
      throw XCTSkip("failed above: \(what) missing")
    }
    throw XCTSkip(message)
  }
}
