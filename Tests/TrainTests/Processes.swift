import Foundation
import Model
import XCTest

/// Runs the built `parallax` executable (alone or under `mpirun`) from tests.
enum Processes {
  /// The products directory that holds the test bundle also holds `parallax`.
  static var productsDirectory: URL {
    for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") {
      return b.bundleURL.deletingLastPathComponent()
    }
    return Bundle.main.bundleURL
  }

  static var parallax: String { productsDirectory.appendingPathComponent("parallax").path }

  struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
  }

  /// Environment for Open MPI as root; OpenBLAS variables are inherited untouched.
  /// Variables that Open MPI's singleton init (DistTests, in this same process) writes into
  /// the environment are stripped: a child `mpirun` that inherits them fails silently.
  static var environment: [String: String] {
    var env = ProcessInfo.processInfo.environment.filter { key, _ in
      !["OMPI_", "PMIX_", "PMI_", "ORTE_", "OPAL_", "SLURM_"].contains { key.hasPrefix($0) }
    }
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    return env
  }

  /// Runs `executable args`, killing it (and failing) after `timeout` seconds.
  static func run(_ executable: String, _ args: [String], timeout: Double = 300) throws -> Result {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    p.environment = environment
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    var outData = Foundation.Data()
    var errData = Foundation.Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
      outData = out.fileHandleForReading.readDataToEndOfFile()
      group.leave()
    }
    group.enter()
    DispatchQueue.global().async {
      errData = err.fileHandleForReading.readDataToEndOfFile()
      group.leave()
    }
    let start = Date()
    try p.run()
    let deadline = start.addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning {
      p.terminate()
      usleep(500_000)
      if p.isRunning { kill(p.processIdentifier, SIGKILL) }
      XCTFail("timed out after \(timeout) s: \(executable) \(args.joined(separator: " "))")
    }
    p.waitUntilExit()
    group.wait()
    return Result(
      status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
      stderr: String(decoding: errData, as: UTF8.self), seconds: Date().timeIntervalSince(start))
  }

  /// `parallax args` alone (np = 1, no mpirun) or under `mpirun -np np`.
  static func parallax(np: Int, _ args: [String], timeout: Double = 300) throws -> Result {
    if np == 1 { return try run(parallax, args, timeout: timeout) }
    let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.fileExists(atPath: $0) } ?? "/usr/bin/mpirun"
    return try run(
      mpirun, ["-np", "\(np)", "--oversubscribe", "--bind-to", "none", parallax] + args, timeout: timeout)
  }

  static func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "parallax-tests-\(getpid())/\(name)"
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }
}
