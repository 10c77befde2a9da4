import Foundation
import Model
import XCTest

@testable import Train

/// Faults a cluster job meets: a rank killed, a stop signal, a damaged checkpoint, a full
/// disk, a resume with another configuration. Each must end cleanly, in bounded time,
/// without losing more than the work since the last good checkpoint.
final class FaultTests: XCTestCase {
  let common = ["--global-batch", "16", "--threads", "1", "--seed", "3"]

  /// (a) SIGKILL to one rank: the job ends non-zero within 30 s, leaves no process, the
  /// last checkpoint (step k) loads, and resuming from `latest` to step k + 2 gives
  /// parameters and optimizer state bit-identical to an uninterrupted run to step k + 2.
  func testKilledRankEndsJobAndLastCheckpointResumes() throws {
    let dir = Processes.temporaryDirectory("fault-kill")
    let job = try Job.mpirun(np: 2, ["pretrain", "--max-steps", "60", "--checkpoint-every", "2", "--run-dir", dir] + common)
    defer { job.stop() }
    XCTAssertTrue(Jobs.poll(timeout: 90) { Jobs.rankLog(dir, rank: 1, contains: "step 3 ") }, "run did not reach step 3:\n\(job.stderr)")
    let victim = try XCTUnwrap(Jobs.rankPID(runDir: dir, rank: 1))
    let killed = Date()
    kill(victim, SIGKILL)
    XCTAssertTrue(job.wait(timeout: 30), "job still running 30 s after a rank was killed")
    XCTAssertLessThan(Date().timeIntervalSince(killed), 30)
    XCTAssertNotEqual(job.status, 0)
    XCTAssertTrue(Jobs.poll(timeout: 5) { Jobs.processes(mentioning: dir).isEmpty }, "left behind: \(Jobs.processes(mentioning: dir))")
    let ck = try Checkpoint.load(dir + "/latest")
    XCTAssertGreaterThanOrEqual(ck.state.step, 2)
    // Resume to step N = k + 2 (same schedule: --max-steps 60, stopped at N) and compare, bit
    // for bit, with a run that was never interrupted, stopped at the same step.
    let n = ck.state.step + 2
    let r = try Processes.parallax(
      np: 2, ["pretrain", "--max-steps", "60", "--stop-after", "\(n)", "--run-dir", dir, "--resume", "latest"] + common,
      timeout: 120)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    XCTAssertTrue(r.stdout.contains("at step \(ck.state.step)"), r.stdout)
    XCTAssertEqual(Jobs.checkpointStep(dir + "/latest"), n)
    let reference = Processes.temporaryDirectory("fault-kill-reference")
    let u = try Processes.parallax(
      np: 2, ["pretrain", "--max-steps", "60", "--stop-after", "\(n)", "--run-dir", reference] + common, timeout: 120)
    XCTAssertEqual(u.status, 0, u.stdout + u.stderr)
    let resumed = try Checkpoint.load(dir + "/latest"), uninterrupted = try Checkpoint.load(reference + "/latest")
    XCTAssertEqual(resumed.state.step, n)
    XCTAssertEqual(uninterrupted.state.step, n)
    XCTAssertEqual(Set(resumed.model.keys), Set(uninterrupted.model.keys))
    for (name, e) in uninterrupted.model {
      XCTAssertEqual(resumed.model[name]?.values.map(\.bitPattern), e.values.map(\.bitPattern), "model \(name) at step \(n)")
    }
    for (name, e) in uninterrupted.optimizer {
      XCTAssertEqual(resumed.optimizer[name]?.values.map(\.bitPattern), e.values.map(\.bitPattern), "optimizer \(name) at step \(n)")
    }
  }

  /// (b) SIGINT to one rank of a plain `mpirun` job: every rank stops after the same step
  /// with a checkpoint and a message, and the job exits 0.
  func testSIGINTToOneRankStopsAllRanksAtTheSameStep() throws {
    let dir = Processes.temporaryDirectory("fault-sigint")
    let job = try Job.mpirun(np: 2, ["pretrain", "--max-steps", "60", "--run-dir", dir] + common)
    defer { job.stop() }
    XCTAssertTrue(Jobs.poll(timeout: 90) { Jobs.rankLog(dir, rank: 1, contains: "step 1 ") }, "run did not start:\n\(job.stderr)")
    kill(try XCTUnwrap(Jobs.rankPID(runDir: dir, rank: 1)), SIGINT)
    XCTAssertTrue(job.wait(timeout: 30), "job did not stop within 30 s of SIGINT")
    XCTAssertEqual(job.status, 0, job.stdout + job.stderr)
    let stopped = try XCTUnwrap(Jobs.stoppedStep(dir, rank: 0), Jobs.read(dir + "/rank-0.log"))
    XCTAssertEqual(Jobs.stoppedStep(dir, rank: 1), stopped)
    XCTAssertLessThan(stopped, 60)
    XCTAssertTrue(job.stdout.contains("stopped by SIGINT after step \(stopped) of 60"), job.stdout)
    XCTAssertEqual(try Checkpoint.load(dir + "/latest").state.step, stopped)
    XCTAssertTrue(Jobs.processes(mentioning: dir).isEmpty)
  }

  /// (b) SIGTERM to `parallax launch` (what Slurm sends the job): forwarded as SIGUSR1,
  /// checkpoint at the next step boundary, clean exit.
  func testSIGTERMToLaunchCheckpointsAndExitsCleanly() throws {
    let dir = Processes.temporaryDirectory("fault-sigterm")
    let job = try Job(Processes.parallax, ["launch", "-n", "2", "--", "pretrain", "--max-steps", "60", "--run-dir", dir] + common)
    defer { job.stop() }
    XCTAssertTrue(Jobs.poll(timeout: 90) { Jobs.rankLog(dir, rank: 0, contains: "step 1 ") }, "run did not start:\n\(job.stderr)")
    kill(job.pid, SIGTERM)
    XCTAssertTrue(job.wait(timeout: 30), "job did not stop within 30 s of SIGTERM")
    XCTAssertEqual(job.status, 0, job.stdout + job.stderr)
    let stopped = try XCTUnwrap(Jobs.stoppedStep(dir, rank: 1), Jobs.read(dir + "/rank-1.log"))
    XCTAssertEqual(Jobs.stoppedStep(dir, rank: 0), stopped)
    XCTAssertTrue(job.stdout.contains("stopped by") && job.stdout.contains("continue with --resume latest"), job.stdout)
    XCTAssertEqual(try Checkpoint.load(dir + "/latest").state.step, stopped)
    XCTAssertTrue(Jobs.processes(mentioning: dir).isEmpty)
  }

  /// (c) A damaged newest checkpoint: named and refused; `--resume latest` falls back to the
  /// previous good one and says so. Also `--keep`.
  func testDamagedCheckpointIsRefusedAndLatestFallsBack() throws {
    let dir = Processes.temporaryDirectory("fault-corrupt")
    let r = try Processes.parallax(np: 1, ["pretrain", "--max-steps", "3", "--checkpoint-every", "1", "--keep", "2", "--run-dir", dir] + common, timeout: 90)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(Checkpoint.list(runDir: dir).map { ($0 as NSString).lastPathComponent }, ["step-00000002", "step-00000003"], "--keep 2")
    let newest = dir + "/step-00000003"
    var bytes = try Data(contentsOf: URL(fileURLWithPath: newest + "/optimizer.safetensors"))
    bytes[bytes.count / 2] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: newest + "/optimizer.safetensors"))

    let named = try Processes.parallax(np: 1, ["pretrain", "--max-steps", "4", "--run-dir", dir, "--resume", newest] + common, timeout: 60)
    XCTAssertNotEqual(named.status, 0)
    XCTAssertTrue(named.stderr.contains(newest + "/optimizer.safetensors: sha256 does not match"), named.stderr)

    let latest = try Processes.parallax(np: 1, ["pretrain", "--max-steps", "3", "--run-dir", dir, "--resume", "latest"] + common, timeout: 90)
    XCTAssertEqual(latest.status, 0, latest.stderr)
    XCTAssertTrue(latest.stdout.contains("refused checkpoint \(newest): \(newest)/optimizer.safetensors: sha256 does not match"), latest.stdout)
    XCTAssertTrue(latest.stdout.contains("falling back to the previous good checkpoint \(dir)/step-00000002"), latest.stdout)
    XCTAssertTrue(latest.stdout.contains("resumed from \(dir)/step-00000002 at step 2"), latest.stdout)
    // Step 3 was redone and replaces the damaged directory.
    XCTAssertEqual(try Checkpoint.load(dir + "/latest").state.step, 3)
  }

  /// (d) No space left while writing a checkpoint: the previous one stays intact and
  /// `latest`, and the error says what happened.
  func testNoSpaceLeavesPreviousCheckpointIntact() throws {
    guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
    let dir = Processes.temporaryDirectory("fault-nospace")
    // One conv4 checkpoint is ~1.0 MB (model + optimizer), so a second does not fit.
    XCTAssertEqual(Self.shell("mount -t tmpfs -o size=1600k tmpfs \(dir)"), 0, "cannot mount a tmpfs on \(dir)")
    defer { _ = Self.shell("umount \(dir) || umount -l \(dir)") }
    let r = try Processes.parallax(np: 1, ["pretrain", "--max-steps", "3", "--checkpoint-every", "1", "--run-dir", dir] + common, timeout: 90)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
    XCTAssertTrue(r.stderr.contains("checkpoint of step 2 not written"), r.stderr)
    XCTAssertTrue(r.stderr.contains("\(dir)/step-00000001 is unchanged and still `latest`"), r.stderr)
    XCTAssertEqual(try Checkpoint.load(dir + "/latest").state.step, 1)
    let names = try FileManager.default.contentsOfDirectory(atPath: dir)
    XCTAssertFalse(names.contains { $0.hasPrefix("step-00000002") }, "partial checkpoint left: \(names)")
  }

  /// (e) Resuming with any setting that must match (`ResumeSource.mustMatch`: method, model,
  /// data, projection dim, optimizer, global batch, seed) changed: a clear error naming it,
  /// nothing overwritten. One case per setting, so dropping any one from the list fails.
  func testIncompatibleResumeIsRefusedAndWritesNothing() throws {
    let dir = Processes.temporaryDirectory("fault-incompatible")
    let r = try Processes.parallax(np: 1, ["pretrain", "--max-steps", "1", "--run-dir", dir] + common, timeout: 90)
    XCTAssertEqual(r.status, 0, r.stderr)
    let before = Jobs.snapshot(dir)
    XCTAssertTrue(before.keys.contains("step-00000001/model.safetensors"))
    let yaml = Processes.temporaryDirectory("fault-incompatible-config") + "/projection.yaml"
    try "projectionDim: 64\n".write(toFile: yaml, atomically: true, encoding: .utf8)
    for (flags, conflict) in [
      (["--model", "resnet18"], "model conv4 (checkpoint) vs resnet18 (this run)"),
      (["--optimizer", "sgd"], "optimizer lars (checkpoint) vs sgd (this run)"),
      (["--method", "simsiam"], "method simclr (checkpoint) vs simsiam (this run)"),
      // conv4 does not take audio, so the data change comes with a model the data allows
      // (validation would refuse conv4 on audio before the resume is checked).
      (["--data", "spoken-digits", "--model", "samplecnn"], "data fashion-mnist (checkpoint) vs spoken-digits (this run)"),
      // No flag sets the projection width; a YAML config does.
      (["--config", yaml], "projectionDim 128 (checkpoint) vs 64 (this run)"),
      (["--global-batch", "32"], "globalBatch 16 (checkpoint) vs 32 (this run)"),
      (["--seed", "4"], "seed 3 (checkpoint) vs 4 (this run)"),
    ] {
      let bad = try Processes.parallax(np: flags.first == "--model" ? 2 : 1, ["pretrain", "--max-steps", "3", "--run-dir", dir, "--resume", "latest"] + common + flags, timeout: 60)
      XCTAssertNotEqual(bad.status, 0)
      XCTAssertTrue(bad.stderr.contains("incompatible with this run: "), bad.stderr)
      XCTAssertTrue(bad.stderr.contains(conflict), "\(flags): \(bad.stderr)")
      XCTAssertEqual(Jobs.snapshot(dir), before, "files changed after a refused resume with \(flags)")
    }
  }

  @discardableResult
  static func shell(_ command: String) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try? p.run()
    p.waitUntilExit()
    return p.terminationStatus
  }
}
