import Foundation
import XCTest

/// `parallax launch`: the command lines it builds (`--dry-run`) and a real run.
final class LaunchTests: XCTestCase {
  var exe: String { Processes.parallax }
  /// What `launch` prefixes when run as root.
  var rootPrefix: String { getuid() == 0 ? "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " : "" }

  func dryRun(_ args: [String], environment: [String: String] = Processes.environment) throws -> (line: String, stderr: String, status: Int32) {
    let job = try Job(exe, ["launch", "--dry-run"] + args, environment: environment)
    XCTAssertTrue(job.wait(timeout: 30), "launch --dry-run did not finish")
    return (job.stdout.trimmingCharacters(in: .whitespacesAndNewlines), job.stderr, job.status)
  }

  func testDryRunPlain() throws {
    let r = try dryRun(["-n", "2", "--cores-per-node", "2", "--", "pretrain", "--max-steps", "1"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(
      r.line,
      rootPrefix + "mpirun -np 2 --map-by slot --bind-to core -x OPENBLAS_NUM_THREADS=1 --stdin none \(exe) pretrain --max-steps 1")
    XCTAssertFalse(r.stderr.contains("warning"), r.stderr)
    // Threads default to cores per node / ranks per node, and each rank is bound to its cores.
    let wide = try dryRun(["-n", "2", "--cores-per-node", "8", "--", "pretrain", "--run-dir", "runs/a b"])
    XCTAssertEqual(
      wide.line,
      rootPrefix + "mpirun -np 2 --map-by slot:PE=4 --bind-to core -x OPENBLAS_NUM_THREADS=4 --stdin none \(exe) pretrain --run-dir 'runs/a b'")
  }

  func testDryRunHostfile() throws {
    let dir = Processes.temporaryDirectory("hostfile")
    let path = dir + "/hosts"
    try "# two nodes\nnode1 slots=2\nnode2 slots=2  # second\n\n".write(toFile: path, atomically: true, encoding: .utf8)
    let r = try dryRun(["-n", "4", "--hostfile", path, "--cores-per-node", "8", "--", "pretrain"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(
      r.line,
      rootPrefix + "mpirun -np 4 --hostfile \(path) --map-by slot:PE=4 --bind-to core -x OPENBLAS_NUM_THREADS=4 --stdin none \(exe) pretrain")
    try "node1 slots=two\n".write(toFile: path, atomically: true, encoding: .utf8)
    let bad = try dryRun(["-n", "2", "--hostfile", path, "--", "pretrain"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("\(path):1") && bad.stderr.contains("slots=two"), bad.stderr)
  }

  func testDryRunHosts() throws {
    let r = try dryRun(["-n", "4", "--hosts", "a:2,b:2", "--cores-per-node", "4", "--", "pretrain"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(
      r.line,
      rootPrefix + "mpirun -np 4 --host a:2,b:2 --map-by slot:PE=2 --bind-to core -x OPENBLAS_NUM_THREADS=2 --stdin none \(exe) pretrain")
    let one = try dryRun(["-n", "4", "--hosts", "a:2,b:2", "--cores-per-node", "4", "--threads", "1", "--", "eval", "knn"])
    XCTAssertTrue(one.line.hasSuffix("--map-by slot --bind-to core -x OPENBLAS_NUM_THREADS=1 --stdin none \(exe) eval knn"), one.line)
    let bad = try dryRun(["-n", "2", "--hosts", "a:x", "--", "pretrain"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("'a:x'"), bad.stderr)
  }

  func testDryRunOversubscribeWarns() throws {
    let r = try dryRun(["-n", "3", "--cores-per-node", "2", "--", "pretrain"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertEqual(
      r.line,
      rootPrefix + "mpirun -np 3 --oversubscribe --map-by slot --bind-to none -x OPENBLAS_NUM_THREADS=1 --stdin none \(exe) pretrain")
    XCTAssertTrue(r.stderr.contains("warning: 3 ranks exceed the 2 cores of this node: oversubscribing"), r.stderr)
    let hosts = try dryRun(["-n", "5", "--hosts", "a:2,b:2", "--cores-per-node", "2", "--", "pretrain"])
    XCTAssertTrue(hosts.line.contains("--host a:2,b:2 --oversubscribe --map-by slot --bind-to none"), hosts.line)
    XCTAssertTrue(hosts.stderr.contains("warning: 5 ranks exceed the 4 slots of the hosts"), hosts.stderr)
  }

  func testDryRunInsideSlurmAllocation() throws {
    var env = Processes.environment
    env["SLURM_JOB_ID"] = "4242"
    env["SLURM_NTASKS"] = "4"
    env["SLURM_JOB_NUM_NODES"] = "2"
    env["SLURM_CPUS_ON_NODE"] = "8(x2)"
    let srun = try dryRun(["--launcher", "srun", "--", "pretrain"], environment: env)
    XCTAssertEqual(srun.status, 0, srun.stderr)
    XCTAssertEqual(
      srun.line,
      "srun --ntasks=4 --cpus-per-task=4 --cpu-bind=cores --kill-on-bad-exit=1 --export=ALL,OPENBLAS_NUM_THREADS=4 \(exe) pretrain")
    // auto: srun when it is on PATH …
    let bin = Processes.temporaryDirectory("fake-srun")
    try "#!/bin/sh\nexit 0\n".write(toFile: bin + "/srun", atomically: true, encoding: .utf8)
    chmod(bin + "/srun", 0o755)
    var withSrun = env
    withSrun["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/bin:/bin")
    withSrun["SLURM_CPUS_PER_TASK"] = "2"
    XCTAssertTrue(try dryRun(["-n", "2", "--", "pretrain"], environment: withSrun).line.hasPrefix("srun --ntasks=2 --cpus-per-task=2 "))
    // … else mpirun inside the allocation (no host list: Open MPI reads the allocation).
    var noSrun = env
    noSrun["PATH"] = "/nonexistent"
    let mpirun = try dryRun(["--", "pretrain"], environment: noSrun)
    XCTAssertEqual(
      mpirun.line,
      rootPrefix + "mpirun -np 4 --map-by slot:PE=4 --bind-to core -x OPENBLAS_NUM_THREADS=4 --stdin none \(exe) pretrain")
    let hosts = try dryRun(["--hosts", "a:2", "--", "pretrain"], environment: env)
    XCTAssertNotEqual(hosts.status, 0)
    XCTAssertTrue(hosts.stderr.contains("Slurm allocation 4242"), hosts.stderr)
  }

  /// A real two-rank run through `launch`, with MPI variables of an enclosing job in the
  /// environment (which `launch` must not pass on), and the exit status forwarded.
  func testLaunchRunsPretrainOnTwoRanks() throws {
    let dir = Processes.temporaryDirectory("launch-run")
    var env = Processes.environment
    env["PMIX_RANK"] = "5"
    env["OMPI_COMM_WORLD_SIZE"] = "9"
    env["OMPI_COMM_WORLD_RANK"] = "5"
    let job = try Job(
      exe, ["launch", "-n", "2", "--", "pretrain", "--global-batch", "32", "--max-steps", "2", "--run-dir", dir, "--threads", "1"],
      environment: env)
    defer { job.stop() }
    XCTAssertTrue(job.wait(timeout: 90), "launch did not finish")
    XCTAssertEqual(job.status, 0, job.stdout + job.stderr)
    XCTAssertTrue(job.stdout.contains("2 rank(s)"), job.stdout)
    XCTAssertTrue(job.stderr.contains("launch: ") && job.stderr.contains("mpirun -np 2"), job.stderr)
    XCTAssertEqual(Jobs.checkpointStep(dir + "/latest"), 2)
    for rank in 0..<2 {
      XCTAssertTrue(Jobs.rankLog(dir, rank: rank, contains: "rank \(rank) of 2"), Jobs.read(dir + "/rank-\(rank).log"))
      XCTAssertTrue(Jobs.rankLog(dir, rank: rank, contains: "step 2 epoch 0 loss"))
    }
    // A failing job's status comes back through launch, with the rank's message.
    let failing = try Job(exe, ["launch", "-n", "2", "--", "pretrain", "--global-batch", "33", "--max-steps", "1", "--run-dir", dir + "-bad"])
    defer { failing.stop() }
    XCTAssertTrue(failing.wait(timeout: 60), "failing launch did not finish")
    XCTAssertNotEqual(failing.status, 0)
    XCTAssertTrue(failing.stderr.contains("not divisible by the 2 ranks"), failing.stderr)
    XCTAssertTrue(Jobs.rankLog(dir + "-bad", rank: 1, contains: "error: global-batch 33 is not divisible"))
  }
}
