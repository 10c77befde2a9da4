import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Durable file operations: write → fsync → rename → fsync the directory, so a crash leaves
/// either the old file or the new one, never a torn one (DESIGN.md invariant 6).
public enum AtomicFile {
  public struct IOError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
  }

  static func errno(_ path: String, _ what: String) -> IOError {
    IOError(path: path, reason: "\(what): \(String(cString: strerror(Glibc.errno)))")
  }

  /// Writes `bytes` to `path` and fsyncs it (no rename; used inside a temp directory).
  public static func writeSynced(_ bytes: Foundation.Data, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw errno(path, "cannot create") }
    defer { close(fd) }
    try bytes.withUnsafeBytes { raw in
      var done = 0
      while done < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
        if n < 0 {
          if Glibc.errno == EINTR { continue }
          throw errno(path, "write failed after \(done) of \(raw.count) bytes")
        }
        done += n
      }
    }
    guard fsync(fd) == 0 else { throw errno(path, "fsync failed") }
  }

  /// fsyncs a directory so a rename inside it is durable.
  public static func syncDirectory(_ path: String) throws {
    let fd = open(path, O_RDONLY | O_DIRECTORY)
    guard fd >= 0 else { throw errno(path, "cannot open directory") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw errno(path, "fsync of directory failed") }
  }

  /// Replaces `path` with `bytes` atomically.
  public static func write(_ bytes: Foundation.Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    do {
      try writeSynced(bytes, to: tmp)
      guard rename(tmp, path) == 0 else { throw errno(path, "rename from \(tmp) failed") }
    } catch {
      unlink(tmp)
      throw error
    }
    try syncDirectory((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent)
  }

  /// Points the symlink `link` at `target` atomically (new symlink, then rename over).
  public static func symlink(_ target: String, at link: String) throws {
    let tmp = link + ".tmp-\(getpid())"
    unlink(tmp)
    guard Glibc.symlink(target, tmp) == 0 else { throw errno(tmp, "cannot create symlink") }
    guard rename(tmp, link) == 0 else {
      unlink(tmp)
      throw errno(link, "cannot replace symlink")
    }
    try syncDirectory((link as NSString).deletingLastPathComponent.isEmpty ? "." : (link as NSString).deletingLastPathComponent)
  }
}
