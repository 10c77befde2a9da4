import Foundation
import XCTest

@testable import Train

/// A host whose network link is cut in the middle of a 2-host pretraining over TCP
/// (`cluster/local-hosts`): the job must end non-zero within the stall timeout plus a margin
/// instead of hanging, leave nothing running, and its last checkpoint must load and resume.
///
/// Open MPI's own out-of-band keepalive is switched off here (`PX_OOB_KEEPALIVE=off`), so
/// what bounds the job is Parallax's stall watchdog (rank 0 stuck in a collective with a
/// peer that no longer answers → `MPI_Abort`), followed by mpirun giving up on the cut-off
/// daemon once the namespaces' `tcp_retries2` (5, ≈ 13 s) expires.
///
/// The timeout is chosen so the watchdog ends the job before TCP does: it fires after
/// `stallTimeout` (6 s) and asks the others for `stallTimeout / 2`, so it aborts ≈ 9 s after
/// the cut, while rank 0's own socket to the cut-off rank gives up after 0.2 · (2⁶ − 1) ≈
/// 12.6 s (`tcp_retries2` = 5) and Open MPI then ends the job itself, without the watchdog's
/// status. Before the collectives between steps were watched (the stop-signal all-reduce, the
/// checkpoint), a cut landing in one of them left only TCP to end the job: 2 of 3 runs failed.
final class LinkCutTests: XCTestCase {
  static let script = LocalHostsTests.script
  let stallTimeout = 6.0

  override func tearDown() {
    // Kills whatever the cut left inside the namespaces (orted and rank 1 on px-h2).
    _ = try? Processes.run("/bin/bash", [Self.script, "down"], timeout: 60)
  }

  func testCutLinkEndsJobWithinStallTimeoutAndCheckpointResumes() throws {
    let up = try Processes.run("/bin/bash", [Self.script, "up", "2"], timeout: 60)
    XCTAssertEqual(up.status, 0, up.stderr)
    let dir = Processes.temporaryDirectory("link-cut")
    let common = ["--model", "conv4", "--global-batch", "32", "--threads", "1", "--seed", "11"]
    var env = Processes.environment
    env["PX_OOB_KEEPALIVE"] = "off"
    let job = try Job(
      "/bin/bash",
      [Self.script, "mpirun", "-np", "2", "--bind-to", "none", Processes.parallax, "pretrain", "--max-steps", "400",
       "--checkpoint-every", "2", "--stall-timeout", "\(Int(stallTimeout))", "--run-dir", dir] + common,
      environment: env)
    defer { job.stop() }
    XCTAssertTrue(
      Jobs.poll(timeout: 90) { Jobs.rankLog(dir, rank: 1, contains: "step 5 ") },
      "run did not reach step 5:\n\(job.stdout)\n\(job.stderr)")
    XCTAssertTrue(Jobs.rankLog(dir, rank: 1, contains: "2 node(s)") || job.stdout.contains("2 node(s)"), job.stdout)

    let cut = Date()
    let down = try Processes.run("/usr/sbin/ip", ["-n", "px-h2", "link", "set", "eth0", "down"], timeout: 10)
    XCTAssertEqual(down.status, 0, down.stderr)
    let bound = stallTimeout + 30
    let ended = job.wait(timeout: bound)
    let took = Date().timeIntervalSince(cut)
    XCTAssertTrue(ended, "job still running \(bound) s after the link was cut:\n\(job.stderr)")
    XCTAssertNotEqual(job.status, 0, job.stdout + job.stderr)
    // The stall watchdog ended the job, not Open MPI's own keepalive (which is off): its
    // report is there, it waited at least the timeout, and the job did not end before it.
    let said = job.stdout + job.stderr
    let report = try XCTUnwrap(
      said.range(of: #"\] stall watchdog: waited ([0-9.]+) s"#, options: .regularExpression).map { String(said[$0]) },
      "the stall watchdog did not report the cut:\n\(said)")
    let waited = Double(report.split(separator: " ")[4]) ?? 0
    XCTAssertGreaterThanOrEqual(waited, stallTimeout, report)
    XCTAssertGreaterThanOrEqual(took, stallTimeout - 1, "the job ended before the watchdog could have fired")
    XCTAssertEqual(job.status, 3, "the watchdog's MPI_Abort(world, 3) sets the job's status")
    print(String(format: "link cut: job exited with status %d %.1f s after the cut", job.status, took))
    print(said.split(separator: "\n").filter { $0.contains("stall watchdog") }.joined(separator: "\n"))

    // Nothing left on the reachable host; `down` (tearDown) reaps the cut-off one.
    XCTAssertTrue(
      Jobs.poll(timeout: 5) {
        (try? Processes.run("/usr/sbin/ip", ["netns", "pids", "px-h1"], timeout: 10).stdout)?.isEmpty ?? false
      }, "processes left on px-h1")

    // The last checkpoint is intact (checksums verified on load) and resumes on one rank.
    let ck = try Checkpoint.load(dir + "/latest")
    XCTAssertGreaterThanOrEqual(ck.state.step, 4)
    XCTAssertEqual(ck.state.step % 2, 0)
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--max-steps", "\(ck.state.step + 1)", "--run-dir", dir, "--resume", "latest"] + common,
      timeout: 90)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    XCTAssertTrue(r.stdout.contains("at step \(ck.state.step)"), r.stdout)
    XCTAssertEqual(Jobs.checkpointStep(dir + "/latest"), ck.state.step + 1)

    // `down` after the failed run: kills what is still inside the namespaces (the cut-off
    // host's orted and rank may linger: nothing could reach them), then removes them.
    let teardown = try Processes.run("/bin/bash", [Self.script, "down"], timeout: 60)
    XCTAssertEqual(teardown.status, 0, teardown.stderr)
    XCTAssertTrue(Jobs.processes(mentioning: dir).isEmpty, "left behind after down: \(Jobs.processes(mentioning: dir))")
    let list = try Processes.run("/usr/sbin/ip", ["netns", "list"], timeout: 30)
    XCTAssertFalse(list.stdout.contains("px-"), "namespaces left after down: \(list.stdout)")
  }
}
