import CBLAS
import Foundation
import Model

#if canImport(Glibc)
  import Glibc
#endif

/// Per-process setup shared by every subcommand: threads per rank and console ownership.
public enum Runtime {
  /// Cores this process may run on (its CPU affinity mask, else the online count).
  public static func availableCores() -> Int {
    // sched_getaffinity needs _GNU_SOURCE, which Swift's Glibc module does not define; the
    // kernel reports the same mask as hex words in /proc/self/status.
    if let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
      for line in s.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
        let hex = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
        let n = hex.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
        if n > 0 { return n }
      }
    }
    return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
  }

  /// Sets OpenBLAS threads to the node's cores divided by the ranks on the node, unless the
  /// user chose (`threads > 0`, or OPENBLAS_NUM_THREADS / OMP_NUM_THREADS in the
  /// environment). Returns the thread count in use.
  @discardableResult
  public static func configureThreads(requested: Int, localSize: Int) -> Int {
    let n = threadCount(requested: requested, localSize: localSize)
    openblas_set_num_threads(Int32(n))
    Gemm.threads = n
    return n
  }

  private static func threadCount(requested: Int, localSize: Int) -> Int {
    let env = ProcessInfo.processInfo.environment
    if requested > 0 { return requested }
    if let s = env["OPENBLAS_NUM_THREADS"] ?? env["OMP_NUM_THREADS"], let n = Int(s), n > 0 {
      return n
    }
    // Under mpirun with binding the affinity mask is this rank's share already; without
    // binding it is the whole node, which the ranks on the node split between them.
    let cores = availableCores()
    let onlineCores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    return cores < onlineCores ? cores : max(1, onlineCores / max(1, localSize))
  }

  /// A seed for rank-specific draws (none of the data pipeline's: those are keyed by sample).
  public static func rankSeed(_ seed: UInt64, rank: Int) -> UInt64 {
    var x = seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(rank + 1)
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    return x ^ (x >> 31)
  }
}

/// Rank 0's console: messages, a progress bar with ETA when stderr is a terminal, and plain
/// progress lines (`StatusLines`) unless that bar is on the terminal that is also stdout.
public final class Console {
  public let isRoot: Bool
  /// stderr is a terminal: the bar draws there.
  let tty: Bool
  /// stdout is a terminal. (Under `mpirun` a rank's stdout may be a pseudo-terminal even when
  /// mpirun's own is a file, while its stderr is a pipe: lines are printed then.)
  let stdoutTTY: Bool
  public init(isRoot: Bool) {
    self.isRoot = isRoot
    tty = isatty(2) != 0
    stdoutTTY = isatty(1) != 0
  }

  /// Whether progress is printed as plain lines: on rank 0, unless the bar is drawn on a
  /// terminal that is also stdout.
  public var printsStatusLines: Bool { isRoot && !(tty && stdoutTTY) }

  /// One line on stdout, flushed at once, leaving a bar on stderr alone.
  public func line(_ s: String) {
    guard isRoot else { return }
    print(s)
    fflush(nil)
  }

  public func say(_ s: String) {
    guard isRoot else { return }
    if tty { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) }
    print(s)
    fflush(nil)  // all output streams (stdout is a pipe under mpirun)
  }

  /// One progress line: `[####......] 120/468 loss 5.12 · 410 samples/s · ETA 3m12s`.
  public func progress(done: Int, total: Int, detail: String, elapsed: Double) {
    guard isRoot, tty, total > 0 else { return }
    let width = 24
    let filled = min(width, done * width / total)
    let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let line = "\r\u{1B}[K[\(bar)] \(done)/\(total) \(detail) · ETA \(Console.duration(eta))"
    FileHandle.standardError.write(line.data(using: .utf8)!)
  }

  public func endProgress() {
    guard isRoot, tty else { return }
    FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!)
  }

  public static func duration(_ s: Double) -> String {
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" }
    if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
    return "\(t)s"
  }
}

