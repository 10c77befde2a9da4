import Foundation

/// Which Parallax made a file: the version, and the git commit of the source tree this
/// executable was built from when that tree is still there (`unknown` otherwise; `+dirty`
/// when it has uncommitted changes). Recorded in exports, checkpoints and run records.
public enum BuildInfo {
  public static let version = "0.1.0"

  /// `git rev-parse --short=12 HEAD` of the source tree (located from this file's path at
  /// build time), asked once.
  public static let commit: String = {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path
    guard FileManager.default.fileExists(atPath: dir + "/.git"),
      let head = git(["-C", dir, "rev-parse", "--short=12", "HEAD"])
    else { return "unknown" }
    let dirty = git(["-C", dir, "status", "--porcelain", "--untracked-files=no"]).map { !$0.isEmpty } ?? false
    return head + (dirty ? "+dirty" : "")
  }()

  /// `version (commit)`.
  public static var description: String { "\(version) (\(commit))" }

  private static func git(_ args: [String]) -> String? {
    let exe = ["/usr/bin/git", "/usr/local/bin/git", "/bin/git"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let exe else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    // A checkout owned by another user (CI containers) is still read.
    p.arguments = ["-c", "safe.directory=*"] + args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  }
}
