import Foundation
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// A file opened for appending through swift-system's `FileDescriptor`: errors come back as
/// thrown errors naming the file (Foundation's `FileHandle.write` traps on a full disk).
public final class AppendFile: Sendable {
  public let path: String
  let fd: FileDescriptor

  public init(path: String) throws {
    self.path = path
    do {
      fd = try FileDescriptor.open(
        FilePath(path), .writeOnly, options: [.create, .append, .closeOnExec],
        permissions: [.ownerReadWrite, .groupRead, .otherRead])
    } catch {
      throw AtomicFile.IOError(path: path, reason: "cannot open for appending: \(error)")
    }
  }

  deinit { try? fd.close() }

  /// Appends all of `text` (retrying short writes and EINTR).
  public func write(_ text: String) throws { try write(bytes: Array(text.utf8)) }

  /// Appends all of `bytes` (retrying short writes and EINTR).
  public func write(bytes: [UInt8]) throws {
    do { _ = try fd.writeAll(bytes) } catch {
      throw AtomicFile.IOError(path: path, reason: "write of \(bytes.count) bytes failed: \(error)")
    }
  }
}

/// Where a rank's log lines go: one append-only file shared by every copy of the handler.
/// Lines are written whole under a lock, so threads do not interleave within a line. A log
/// must not end a run: a failed write (full disk) is reported once on stderr and later lines
/// are dropped.
final class RankLogSink: Sendable {
  let rank: Int
  private let file: Mutex<AppendFile?>

  init(rank: Int, file: AppendFile) {
    self.rank = rank
    self.file = Mutex(file)
  }

  func write(_ line: String) {
    let failure: String? = file.withLock { file in
      guard let f = file else { return nil }
      do {
        try f.write(line)
        return nil
      } catch {
        file = nil
        return "\(error)"
      }
    }
    if let failure {
      FileHandle.standardError.write(Data("[rank \(rank)] warning: \(failure); rank log stopped\n".utf8))
    }
  }
}

/// A swift-log `LogHandler` that writes one line per event to `RUN_DIR/rank-R.log`:
///
///     2026-12-01T21:00:00.123 info [rank=1 bucket=3] message
///
/// The rank is part of the handler's metadata (so it is printed with every line and a
/// `Logger` made from the handler carries it); the logger's and the event's metadata follow,
/// sorted by key.
public struct RankLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata
  public var metadataProvider: Logger.MetadataProvider?
  let sink: RankLogSink

  /// Opens (appending) `path` for rank `rank`.
  public init(path: String, rank: Int, level: Logger.Level = .info) throws {
    self.init(sink: RankLogSink(rank: rank, file: try AppendFile(path: path)), level: level)
  }

  init(sink: RankLogSink, level: Logger.Level) {
    self.sink = sink
    logLevel = level
    metadata = ["rank": "\(sink.rank)"]
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var all = metadata
    if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
    if let extra = event.metadata { all.merge(extra) { _, new in new } }
    // The rank first, then the rest by key.
    var fields = ["rank=\(all.removeValue(forKey: "rank").map { "\($0)" } ?? "\(sink.rank)")"]
    fields += all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    sink.write("\(RankLog.timestamp()) \(event.level) [\(fields.joined(separator: " "))] \(event.message)\n")
  }
}

/// Every rank's own log, `RUN_DIR/rank-R.log`: who the rank is (host, pid, local rank,
/// threads), its step lines and its messages and errors. The console belongs to rank 0
/// alone; this is where the other ranks say what happened to them.
///
/// A thin façade over a swift-log `Logger` whose handler is `RankLogHandler`: `note` logs
/// at `.info`; code that wants levels or metadata uses `RankLog.current?.logger` (or
/// `RankLog.log(_:_:metadata:)`). Lines below `RankLog.level` are dropped.
public final class RankLog: Sendable {
  private static let state = Mutex<RankLog?>(nil)
  private static let configuredLevel = Mutex<Logger.Level>(.info)

  /// The process's log once `open` has run (the CLI's error path writes to it).
  public static var current: RankLog? { state.withLock { $0 } }

  /// The lowest level written by logs opened from now on, and by the current one
  /// (default `.info`; `.debug` and `.trace` add detail).
  public static var level: Logger.Level {
    get { configuredLevel.withLock { $0 } }
    set {
      configuredLevel.withLock { $0 = newValue }
      current?.loggerState.withLock { $0.logLevel = newValue }
    }
  }

  public let rank: Int
  public let path: String
  private let loggerState: Mutex<Logger>

  /// The logger writing to this rank's file (a copy: changing its level or metadata does not
  /// change the façade's).
  public var logger: Logger { loggerState.withLock { $0 } }

  /// Opens (appending) `runDir/rank-<rank>.log`, creating the directory, and makes it `current`.
  @discardableResult
  public static func open(runDir: String, rank: Int, level: Logger.Level? = nil) throws -> RankLog {
    do {
      try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
    } catch {
      throw AtomicFile.IOError(path: runDir, reason: "cannot create run directory: \(error.localizedDescription)")
    }
    if let level { configuredLevel.withLock { $0 = level } }
    let file = path(runDir: runDir, rank: rank)
    let handler = try RankLogHandler(path: file, rank: rank, level: Self.level)
    let log = RankLog(rank: rank, path: file, logger: Logger(label: "parallax.rank\(rank)") { _ in handler })
    state.withLock { $0 = log }
    return log
  }

  public static func path(runDir: String, rank: Int) -> String {
    (runDir as NSString).appendingPathComponent("rank-\(rank).log")
  }

  init(rank: Int, path: String, logger: Logger) {
    self.rank = rank
    self.path = path
    loggerState = Mutex(logger)
  }

  /// Appends one time-stamped line at `level` (default `.info`).
  public func write(_ message: String, level: Logger.Level = .info, metadata: Logger.Metadata? = nil) {
    logger.log(level: level, "\(message)", metadata: metadata)
  }

  /// Writes an `.info` line to the current rank log, if any.
  public static func note(_ message: String) { current?.write(message) }

  /// Writes a line at `level` with `metadata` to the current rank log, if any.
  public static func log(_ level: Logger.Level, _ message: String, metadata: Logger.Metadata? = nil) {
    current?.write(message, level: level, metadata: metadata)
  }

  /// Stops logging to the current file (tests; a later `open` starts a new one).
  public static func close() { state.withLock { $0 = nil } }

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
