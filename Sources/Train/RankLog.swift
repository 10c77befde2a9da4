import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A file opened for appending with plain `write(2)`: errors come back as thrown errors
/// (Foundation's `FileHandle.write` traps on a full disk).
public final class AppendFile {
  public let path: String
  let fd: Int32

  public init(path: String) throws {
    self.path = path
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw AtomicFile.errno(path, "cannot open for appending") }
  }

  deinit { close(fd) }

  public func write(_ text: String) throws {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
      if n < 0 {
        if Glibc.errno == EINTR { continue }
        throw AtomicFile.errno(path, "write failed after \(done) of \(bytes.count) bytes")
      }
      done += n
    }
  }
}

/// Every rank's own log, `RUN_DIR/rank-R.log`: who the rank is (host, pid, local rank,
/// threads), its step lines and its messages and errors. The console belongs to rank 0
/// alone; this is where the other ranks say what happened to them.
public final class RankLog {
  /// The process's log once `open` has run (the CLI's error path writes to it).
  nonisolated(unsafe) public private(set) static var current: RankLog?

  public let rank: Int
  let file: AppendFile
  private var failed = false

  /// Opens (appending) `runDir/rank-<rank>.log`, creating the directory, and makes it `current`.
  @discardableResult
  public static func open(runDir: String, rank: Int) throws -> RankLog {
    do {
      try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
    } catch {
      throw AtomicFile.IOError(path: runDir, reason: "cannot create run directory: \(error.localizedDescription)")
    }
    let log = RankLog(rank: rank, file: try AppendFile(path: path(runDir: runDir, rank: rank)))
    current = log
    return log
  }

  public static func path(runDir: String, rank: Int) -> String {
    (runDir as NSString).appendingPathComponent("rank-\(rank).log")
  }

  init(rank: Int, file: AppendFile) {
    self.rank = rank
    self.file = file
  }

  /// Appends one time-stamped line. A log must not end a run: a failed write (full disk) is
  /// reported once on stderr and later lines are dropped.
  public func write(_ message: String) {
    guard !failed else { return }
    do { try file.write("\(RankLog.timestamp()) \(message)\n") } catch {
      failed = true
      FileHandle.standardError.write("[rank \(rank)] warning: \(error); rank log stopped\n".data(using: .utf8)!)
    }
  }

  /// Writes to the current rank log, if any.
  public static func note(_ message: String) { current?.write(message) }

  static func timestamp() -> String {
    var tv = timeval()
    gettimeofday(&tv, nil)
    var t = time_t(tv.tv_sec)
    var parts = tm()
    localtime_r(&t, &parts)
    var buf = [CChar](repeating: 0, count: 32)
    strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%S", &parts)
    let prefix = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return prefix + String(format: ".%03d", Int(tv.tv_usec) / 1000)
  }
}
