import Foundation
import XCTest

/// A process started in the background (to signal it, kill one of its ranks, or give it its
/// own environment); output goes to files so no pipe can fill up.
final class Job {
  let process = Process()
  let outPath: String
  let errPath: String
  let started = Date()

  init(_ executable: String, _ args: [String], environment: [String: String] = Processes.environment) throws {
    let base = NSTemporaryDirectory() + "parallax-job-\(getpid())-\(UUID().uuidString)"
    outPath = base + ".out"
    errPath = base + ".err"
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = args
    process.environment = environment
    process.standardOutput = FileHandle(forWritingAtPath: outPath)
    process.standardError = FileHandle(forWritingAtPath: errPath)
    try process.run()
  }

  /// `parallax args` under `mpirun -np np` (as `Processes.parallax` runs it).
  static func mpirun(np: Int, _ args: [String]) throws -> Job {
    try Job(Jobs.mpirun, ["-np", "\(np)", "--oversubscribe", "--bind-to", "none", Processes.parallax] + args)
  }

  var pid: Int32 { process.processIdentifier }
  var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
  var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }
  var status: Int32 { process.terminationStatus }

  /// Waits up to `timeout` seconds; returns whether the process ended.
  @discardableResult
  func wait(timeout: Double) -> Bool {
    Jobs.poll(timeout: timeout) { !self.process.isRunning }
  }

  /// Ends a job that overran (mpirun first, so that it takes its ranks with it).
  func stop() {
    guard process.isRunning else { return }
    kill(pid, SIGTERM)
    if !wait(timeout: 5) { kill(pid, SIGKILL) }
    process.waitUntilExit()
  }
}

enum Jobs {
  static var mpirun: String {
    ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.fileExists(atPath: $0) } ?? "/usr/bin/mpirun"
  }

  /// Polls `condition` every 50 ms for up to `timeout` seconds.
  @discardableResult
  static func poll(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if condition() { return true }
      usleep(50_000)
    }
    return condition()
  }

  static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

  /// The pid a rank wrote into its log (`… pid 1234 …`).
  static func rankPID(runDir: String, rank: Int) -> Int32? {
    let text = read(runDir + "/rank-\(rank).log")
    guard let r = text.range(of: #"pid (\d+)"#, options: .regularExpression) else { return nil }
    return Int32(text[r].dropFirst(4))
  }

  /// Whether a rank's log has a line containing `text`.
  static func rankLog(_ runDir: String, rank: Int, contains text: String) -> Bool {
    read(runDir + "/rank-\(rank).log").contains(text)
  }

  /// Processes whose command line mentions `marker` (a run directory unique to one test).
  static func processes(mentioning marker: String) -> [String] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
    p.arguments = ["-a", "-f", marker]
    let out = Pipe()
    p.standardOutput = out
    try? p.run()
    p.waitUntilExit()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return text.split(separator: "\n").map(String.init).filter { !$0.contains("pgrep") }
  }

  /// The `step` in a checkpoint's state.json.
  static func checkpointStep(_ dir: String) -> Int? {
    guard let data = FileManager.default.contents(atPath: dir + "/state.json"),
      let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return nil }
    return json["step"] as? Int
  }

  /// The last `stopped after step N` a rank logged.
  static func stoppedStep(_ runDir: String, rank: Int) -> Int? {
    let text = read(runDir + "/rank-\(rank).log")
    guard let r = text.range(of: #"stopped after step (\d+)"#, options: [.regularExpression, .backwards]) else { return nil }
    return Int(text[r].split(separator: " ").last!)
  }

  /// The bytes of every file under `dir` (symlinks as their targets) except the rank logs,
  /// which only ever grow.
  static func snapshot(_ dir: String) -> [String: Foundation.Data] {
    var out: [String: Foundation.Data] = [:]
    let fm = FileManager.default
    let e = fm.enumerator(atPath: dir)
    while let rel = e?.nextObject() as? String {
      let path = dir + "/" + rel
      guard !rel.hasPrefix("rank-") else { continue }
      if let target = try? fm.destinationOfSymbolicLink(atPath: path) {
        out[rel] = Foundation.Data(("-> " + target).utf8)
        continue
      }
      var isDir: ObjCBool = false
      guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { continue }
      out[rel] = fm.contents(atPath: path)
    }
    return out
  }
}
