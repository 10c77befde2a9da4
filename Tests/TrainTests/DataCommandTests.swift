import Foundation
import XCTest

@testable import Data

/// `parallax data …` end to end: the example commands of its help.
final class DataCommandTests: XCTestCase {
  func testSpokenDigitsThenPackWithSkippedFile() throws {
    let dir = Processes.temporaryDirectory("digits")
    let r = try Processes.run(
      Processes.parallax,
      ["data", "spoken-digits", "--out", dir, "--languages", "fr", "es", "--voices", "2", "--speeds", "160", "--jobs", "2"],
      timeout: 60)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("wrote 40 clips"), r.stdout)
    let manifest = try String(contentsOfFile: "\(dir)/manifest.csv", encoding: .utf8)
    XCTAssertTrue(manifest.contains("fr/fr_f1_s160_p65_1.wav,1,fr,f1,female,160,65"), manifest)

    // A zero-length file in the manifest: fail names it; skip counts it.
    try Data().write(to: URL(fileURLWithPath: "\(dir)/broken.wav"))
    try (manifest + "broken.wav,3,fr,m1,male,160,35\n").write(toFile: "\(dir)/with-bad.csv", atomically: true, encoding: .utf8)
    let shard = "\(dir)/digits.pxrs"
    let fail = try Processes.run(
      Processes.parallax, ["data", "pack", "--manifest", "\(dir)/with-bad.csv", "--out", shard, "--clip-samples", "8000"], timeout: 60)
    XCTAssertNotEqual(fail.status, 0)
    XCTAssertTrue(fail.stderr.contains("broken.wav"), fail.stderr)
    let skip = try Processes.run(
      Processes.parallax,
      ["data", "pack", "--manifest", "\(dir)/with-bad.csv", "--out", shard, "--clip-samples", "8000", "--on-bad-file", "skip"],
      timeout: 60)
    XCTAssertEqual(skip.status, 0, skip.stderr)
    XCTAssertTrue(skip.stdout.contains("packed 40 clips (1 skipped)"), skip.stdout)
    XCTAssertTrue(skip.stderr.contains("broken.wav"), skip.stderr)
    let source = try AudioShardSource(path: shard)
    XCTAssertEqual(source.count, 40)
    XCTAssertEqual(source.info.samples, 8000)
    XCTAssertEqual(source.classNames[1], ["es", "fr"])
  }
}
