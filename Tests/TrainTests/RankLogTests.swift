import Foundation
import Logging
import XCTest

@testable import Train

/// The per-rank log through swift-log: `RankLogHandler` writes `RUN_DIR/rank-R.log`, one line
/// per event with the rank and the metadata, and drops what is below the level.
final class RankLogTests: XCTestCase {
  override func tearDown() {
    RankLog.close()
    RankLog.level = .info
  }

  func temporaryRunDir() -> String {
    let dir = NSTemporaryDirectory() + "parallax-ranklog-\(getpid())-\(UUID().uuidString)"
    addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
  }

  func lines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
  }

  func testFacadeWritesRankFileWithLevelsAndMetadata() throws {
    let dir = temporaryRunDir()
    let log = try RankLog.open(runDir: dir, rank: 3, level: .info)
    XCTAssertEqual(log.path, dir + "/rank-3.log")
    XCTAssertTrue(RankLog.current === log)
    RankLog.note("rank 3 of 4 on host pid 42")
    RankLog.log(.debug, "hidden detail")
    RankLog.log(.error, "bucket stalled", metadata: ["bucket": "7", "step": "12"])
    let text = lines(dir + "/rank-3.log")
    XCTAssertEqual(text.count, 2, text.joined(separator: "\n"))
    XCTAssertTrue(text[0].hasSuffix(" info [rank=3] rank 3 of 4 on host pid 42"), text[0])
    XCTAssertTrue(text[1].hasSuffix(" error [rank=3 bucket=7 step=12] bucket stalled"), text[1])
    // The line starts with a local time stamp to the millisecond.
    XCTAssertNotNil(text[0].range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} "#, options: .regularExpression))
  }

  func testLevelIsConfigurable() throws {
    let dir = temporaryRunDir()
    try RankLog.open(runDir: dir, rank: 0, level: .warning)
    RankLog.note("info is below warning")
    RankLog.log(.warning, "kept")
    RankLog.level = .debug
    RankLog.log(.debug, "now kept too")
    RankLog.log(.trace, "still below debug")
    let text = lines(dir + "/rank-0.log")
    XCTAssertEqual(text.map { $0.split(separator: " ", maxSplits: 3).dropFirst().joined(separator: " ") },
      ["warning [rank=0] kept", "debug [rank=0] now kept too"])
  }

  func testLoggerFromHandlerCarriesRankAndOwnMetadata() throws {
    let dir = temporaryRunDir()
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let handler = try RankLogHandler(path: dir + "/rank-5.log", rank: 5, level: .trace)
    var logger = Logger(label: "test") { _ in handler }
    logger[metadataKey: "phase"] = "backward"
    XCTAssertEqual(logger[metadataKey: "rank"], "5")
    logger.trace("t")
    logger.critical("c", metadata: ["phase": "sync"])
    let text = lines(dir + "/rank-5.log")
    XCTAssertEqual(text.count, 2)
    XCTAssertTrue(text[0].hasSuffix(" trace [rank=5 phase=backward] t"), text[0])
    XCTAssertTrue(text[1].hasSuffix(" critical [rank=5 phase=sync] c"), "event metadata wins: " + text[1])
  }

  func testLinesFromManyThreadsStayWhole() throws {
    let dir = temporaryRunDir()
    try RankLog.open(runDir: dir, rank: 1)
    DispatchQueue.concurrentPerform(iterations: 4) { t in
      for i in 0..<200 { RankLog.note("thread \(t) line \(i) " + String(repeating: "x", count: 200)) }
    }
    let text = lines(dir + "/rank-1.log")
    XCTAssertEqual(text.count, 800)
    for line in text { XCTAssertTrue(line.hasSuffix(String(repeating: "x", count: 200)) && line.contains(" info [rank=1] thread "), line) }
  }

  func testUnwritableRunDirectoryIsAThrownErrorNamingIt() {
    XCTAssertThrowsError(try RankLog.open(runDir: "/proc/parallax-no/run", rank: 0)) { error in
      XCTAssertTrue("\(error)".contains("/proc/parallax-no/run"), "\(error)")
    }
  }
}

/// Checkpoint digests are standard SHA-256 (FIPS 180-4 test vectors), so a checkpoint written
/// by the earlier hand-written implementation still verifies.
final class SHA256Tests: XCTestCase {
  func testFIPSVectors() {
    XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    XCTAssertEqual(
      SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }
}
