import Foundation
import XCTest

/// Runs the `DistCheck` executable under `mpirun -np N` and checks that every rank passed
/// every check. `DistCheck` is built with the tests (`swift build --build-tests`) into the
/// same products directory as the test bundle.
final class MPIRunTests: XCTestCase {
  /// The checks DistCheck runs, in order; every rank must print `PASS` for each.
  static let checks = [
    "identity", "local-rank", "node-count", "allreduce-sum-float", "allreduce-average-float",
    "allreduce-max-min-float", "allreduce-sum-max-double", "allreduce-sum-max-int64",
    "allreduce-large-float", "collective-protocol", "allgather", "allgather-in-place",
    "broadcast-float", "broadcast-bytes", "broadcast-string", "gather", "gather-variable",
    "iallreduce", "iallreduce-buckets", "barrier", "invalid-root-throws", "usable-after-error",
  ]

  func testDistCheckTwoRanks() throws {
    try runDistCheck(ranks: 2)
  }

  func testDistCheckThreeRanksOversubscribed() throws {
    try runDistCheck(ranks: 3)
  }

  /// DistCheck started without mpirun is a singleton world of one rank.
  func testDistCheckAloneIsSizeOneWorld() throws {
    let result = try run(executable: try distCheckURL(), arguments: [], timeout: 60)
    XCTAssertEqual(result.status, 0, result.log)
    assertAllPassed(result.stdout, ranks: 1)
  }

  /// One rank's `abort(code:)` ends the whole job: no rank is left waiting in a collective.
  func testAbortOnOneRankEndsAllRanks() throws {
    let start = Date()
    let result = try run(
      executable: try mpirunURL(),
      arguments: ["-np", "3", "--oversubscribe", try distCheckURL().path, "abort-rank", "1"],
      timeout: 60)
    XCTAssertEqual(result.status, 7, result.log)
    XCTAssertTrue(result.stdout.contains("rank 1/3 aborting"), result.log)
    XCTAssertFalse(result.stdout.contains("passed a barrier"), result.log)
    print("mpirun -np 3 DistCheck abort-rank 1: \(seconds(since: start)) s")
  }

  func testMpirunReportsFailingRank() throws {
    // mpirun must report a failing rank as a non-zero exit: a rank that exits 3 here.
    let mpirun = try mpirunURL()
    let result = try run(
      executable: mpirun,
      arguments: ["-np", "2", "--oversubscribe", "/bin/sh", "-c", "exit 3"], timeout: 60)
    XCTAssertNotEqual(result.status, 0, result.log)
  }

  // MARK: Helpers

  private func seconds(since start: Date) -> String {
    String(format: "%.2f", Date().timeIntervalSince(start))
  }

  private func runDistCheck(ranks: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    let start = Date()
    let result = try run(
      executable: try mpirunURL(),
      // --oversubscribe: more ranks than this machine's cores (2 here, maybe 1 elsewhere).
      arguments: ["-np", "\(ranks)", "--oversubscribe", try distCheckURL().path],
      timeout: 60)
    print("mpirun -np \(ranks) \(try distCheckURL().path): \(seconds(since: start)) s")
    XCTAssertEqual(result.status, 0, result.log, file: file, line: line)
    assertAllPassed(result.stdout, ranks: ranks, file: file, line: line)
  }

  private func assertAllPassed(
    _ output: String, ranks: Int, file: StaticString = #filePath, line: UInt = #line
  ) {
    let lines = Set(output.split(separator: "\n").map(String.init))
    for rank in 0..<ranks {
      for check in Self.checks {
        XCTAssertTrue(
          lines.contains("rank \(rank)/\(ranks) PASS \(check)"),
          "rank \(rank) of \(ranks) did not pass \(check):\n\(output)", file: file, line: line)
      }
      XCTAssertTrue(
        lines.contains("rank \(rank)/\(ranks) DONE all checks passed"),
        "rank \(rank) of \(ranks) did not finish", file: file, line: line)
    }
    XCTAssertFalse(output.contains(" FAIL "), output, file: file, line: line)
  }

  private struct Result {
    var status: Int32
    var stdout: String
    var stderr: String
    var log: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
  }

  /// Runs a program with output captured to files (no pipe to fill up), killing it and
  /// failing after `timeout` seconds.
  private func run(executable: URL, arguments: [String], timeout: TimeInterval) throws -> Result {
    let dir = FileManager.default.temporaryDirectory
      .appendingPathComponent("disttests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("stdout")
    let errURL = dir.appendingPathComponent("stderr")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL)
    let err = try FileHandle(forWritingTo: errURL)

    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.environment = Self.childEnvironment()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    let done = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in done.signal() }
    try process.run()
    if done.wait(timeout: .now() + timeout) == .timedOut {
      process.terminate()  // mpirun forwards SIGTERM to its ranks
      if done.wait(timeout: .now() + 5) == .timedOut {
        kill(process.processIdentifier, SIGKILL)
        _ = done.wait(timeout: .now() + 5)
      }
      try? out.close()
      try? err.close()
      let partial = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
      XCTFail(
        "\(executable.lastPathComponent) \(arguments) timed out after \(timeout) s:\n\(partial)")
      return Result(status: -1, stdout: partial, stderr: "")
    }
    try out.close()
    try err.close()
    return Result(
      status: process.terminationStatus,
      stdout: try String(contentsOf: outURL, encoding: .utf8),
      stderr: try String(contentsOf: errURL, encoding: .utf8))
  }

  /// This process's environment without the variables an MPI launcher (or this process's
  /// own singleton MPI_Init) sets, which would make the child believe it is already a rank;
  /// plus Open MPI's consent to run as root (tests run as root in CI containers).
  static func childEnvironment() -> [String: String] {
    var env = ProcessInfo.processInfo.environment.filter { key, _ in
      !(key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_")
        || key.hasPrefix("ORTE_") || key.hasPrefix("OPAL_") || key.hasPrefix("SLURM_"))
    }
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env
  }

  private func mpirunURL() throws -> URL {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":").map(String.init) + ["/usr/bin"] {
      let candidate = URL(fileURLWithPath: dir).appendingPathComponent("mpirun")
      if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    throw XCTSkipFailure("mpirun not found on PATH (Debian package openmpi-bin)")
  }

  /// `DistCheck` in the products directory that holds this test bundle (works for
  /// `.build/debug`, `.build/<triple>/release` and any `--scratch-path`), falling back to
  /// the package's `.build/debug`.
  private func distCheckURL() throws -> URL {
    var candidates: [URL] = []
    for bundle in [Bundle(for: MPIRunTests.self), Bundle.main] {
      if let exe = bundle.executableURL {
        // Linux: the bundle is the test executable `<products>/<Package>PackageTests.xctest`.
        // macOS: `<products>/X.xctest/Contents/MacOS/X`.
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<4 {
          candidates.append(dir.appendingPathComponent("DistCheck"))
          dir = dir.deletingLastPathComponent()
        }
      }
      candidates.append(
        bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("DistCheck"))
    }
    let packageRoot = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(packageRoot.appendingPathComponent(".build/debug/DistCheck"))
    for candidate in candidates
    where FileManager.default.isExecutableFile(atPath: candidate.path) {
      return candidate
    }
    throw XCTSkipFailure(
      "DistCheck not built next to the tests; run `swift build --build-tests` first. Looked in:\n"
        + candidates.map(\.path).joined(separator: "\n"))
  }
}

/// A missing prerequisite is a failure, not a skip: these tests must not pass vacuously.
struct XCTSkipFailure: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
