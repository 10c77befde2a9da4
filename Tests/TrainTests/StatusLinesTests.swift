import Foundation
import XCTest

@testable import Train

/// Progress lines when stdout is not a terminal (`--log-interval`): the tests' stdout is a
/// pipe, as a batch job's log file is.
final class StatusLinesTests: XCTestCase {
  static let pattern = try! NSRegularExpression(
    pattern: #"^step (\d+)/(\d+) · epoch (\d+)/(\d+) · loss \d+\.\d{4} · \d+ samples/s · elapsed \d+s · ETA \d+s$"#,
    options: [.anchorsMatchLines])

  /// (step, total) of every progress line in `out`.
  func lines(_ out: String) -> [(Int, Int)] {
    Self.pattern.matches(in: out, range: NSRange(out.startIndex..., in: out)).compactMap { m in
      guard let a = Range(m.range(at: 1), in: out), let b = Range(m.range(at: 2), in: out) else { return nil }
      return (Int(out[a]) ?? -1, Int(out[b]) ?? -1)
    }
  }

  func testALinePerStepAtIntervalZero() throws {
    let dir = Processes.temporaryDirectory("status-0")
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "16", "--max-steps", "4", "--threads", "1", "--run-dir", dir, "--log-interval", "0"],
      timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(lines(r.stdout).map(\.0), [1, 2, 3, 4], r.stdout)
    XCTAssertEqual(Set(lines(r.stdout).map(\.1)), [4])
  }

  /// At the default 30 s a run of a few seconds prints only its last step's line.
  func testDefaultIntervalPrintsTheLastStep() throws {
    let dir = Processes.temporaryDirectory("status-30")
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "16", "--max-steps", "3", "--threads", "1", "--run-dir", dir], timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(lines(r.stdout).map(\.0), [3], r.stdout)
  }

  /// Under mpirun (as `launch` and `scripts/main-job.sh` run it) rank 0 alone prints them.
  func testLinesUnderMPIRunFromRankZeroOnly() throws {
    let dir = Processes.temporaryDirectory("status-mpi")
    let r = try Processes.parallax(
      np: 2, ["pretrain", "--global-batch", "16", "--max-steps", "3", "--threads", "1", "--run-dir", dir, "--log-interval", "0"],
      timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(lines(r.stdout).map(\.0), [1, 2, 3], r.stdout)
  }

  func testLineTextAndETA() {
    XCTAssertEqual(
      StatusLines.text(step: 120, total: 702, epoch: 0, epochs: 3, loss: 5.12346, samplesPerSecond: 1083.4, elapsed: 62, eta: 301),
      "step 120/702 · epoch 1/3 · loss 5.1235 · 1083 samples/s · elapsed 1m02s · ETA 5m01s")
    // 10 steps in 20 s, 30 left: 60 s.
    XCTAssertEqual(StatusLines.eta(done: 10, remaining: 30, elapsed: 20), 60)
    XCTAssertEqual(StatusLines.eta(done: 0, remaining: 30, elapsed: 0), 0)
  }

  func testLogIntervalIsValidated() throws {
    var c = PretrainConfig()
    XCTAssertThrowsError(try OptionArguments.apply(["--log-interval", "-1"], to: &c)) { e in
      XCTAssertTrue("\(e)".contains("--log-interval"), "\(e)")
    }
    try OptionArguments.apply(["--log-interval", "2.5"], to: &c)
    XCTAssertEqual(c.logInterval, 2.5)
  }
}
