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

  /// A method's own line (MT-SLVR's task losses) prints on `--log-every` steps at most once
  /// per `--log-interval` seconds: the first due step, then the next due one ≥ interval later.
  func testMethodLinesFollowTheLogInterval() {
    var c = MethodLineCadence(every: 2, interval: 30)
    let printed = [(1, 0.0), (2, 1.0), (4, 20.0), (6, 31.5), (7, 70.0), (8, 70.0), (10, 80.0)]
      .filter { c.due(step: $0.0, time: $0.1) }.map(\.0)
    XCTAssertEqual(printed, [2, 6, 8])
    var every = MethodLineCadence(every: 1, interval: 0)
    XCTAssertEqual((1...4).filter { every.due(step: $0, time: 5) }, [1, 2, 3, 4])
  }

  /// MT-SLVR under the default interval prints its task-loss line once in a run of seconds, not
  /// once per step (the main job's log had 2808 of them).
  func testMTSLVRLinesAreNotPerStep() throws {
    let dir = Processes.temporaryDirectory("status-mtslvr")
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--method", "mtslvr", "--adapter", "none", "--global-batch", "16", "--max-steps", "4",
        "--threads", "1", "--run-dir", dir], timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    let taskLines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("mtslvr step ") }
    XCTAssertEqual(taskLines.map { String($0.prefix(14)) }, ["mtslvr step 1:"], r.stdout)
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
