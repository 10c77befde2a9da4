import CBLAS
import Dispatch
import Foundation

/// Single-precision GEMM for every layer and loss, row-major as `cblas_sgemm`:
/// `C[M×N] = α·op(A)[M×K]·op(B)[K×N] + β·C` (β = 0: C is not read).
///
/// On CPUs with AVX-512F it runs Parallax's blocked kernel (`Sources/CBLAS/parallax_sgemm.h`),
/// splitting N over `threads` threads; elsewhere it calls OpenBLAS. Debian's OpenBLAS 0.3.21
/// falls back to its SSE3 ("Prescott") kernels on CPUs it does not know (e.g. Emerald Rapids),
/// ~5× slower than AVX-512. `GemmReference` is the naive oracle.
///
/// Thread-safe: concurrent calls use separate pack buffers.
public enum Gemm {
  /// Whether the built-in AVX-512 kernel can run here.
  public static let builtinAvailable = px_sgemm_available() != 0
  /// Use the built-in kernel when available (false: always OpenBLAS; for comparisons).
  nonisolated(unsafe) public static var useBuiltin = true
  /// Threads the built-in kernel splits N over (`Runtime.configureThreads` sets it with
  /// OpenBLAS's count).
  nonisolated(unsafe) public static var threads = 1

  typealias Packs = (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
  /// Pack buffers [MC·KC] and [KC·NC] not in use; a call takes one pair per thread and gives
  /// them back, so concurrent callers (simulated ranks in tests) never share one. Allocated on
  /// first use and kept: the steady state allocates nothing.
  nonisolated(unsafe) private static var pool: [Packs] = []
  nonisolated(unsafe) private static var allocated = 0
  private static let lock = NSLock()

  /// Bytes held by the pack buffers (for memory estimates).
  public static var workspaceFloats: Int {
    lock.lock()
    defer { lock.unlock() }
    return allocated * (Int(PX_MC) * Int(PX_KC) + Int(PX_KC) * Int(PX_NC))
  }

  private static func take(_ t: Int) -> [Packs] {
    lock.lock()
    defer { lock.unlock() }
    while pool.count < t {
      let a = UnsafeMutableRawPointer.allocate(byteCount: Int(PX_MC) * Int(PX_KC) * 4, alignment: 64)
      let b = UnsafeMutableRawPointer.allocate(byteCount: Int(PX_KC) * Int(PX_NC) * 4, alignment: 64)
      pool.append((a.bindMemory(to: Float.self, capacity: 1), b.bindMemory(to: Float.self, capacity: 1)))
      allocated += 1
    }
    let got = Array(pool.suffix(t))
    pool.removeLast(t)
    return got
  }

  private static func give(_ p: [Packs]) {
    lock.lock()
    pool += p
    lock.unlock()
  }

  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard m > 0, n > 0 else { return }
    guard useBuiltin, builtinAvailable else {
      cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
      return
    }
    let nr = Int(PX_NR)
    // Column slices of whole micro-tiles, at least 4 tiles each, so small N stays serial.
    let parts = max(1, min(threads, (n + 4 * nr - 1) / (4 * nr)))
    let ps = take(parts)
    defer { give(ps) }
    let ta: Int32 = transA ? 1 : 0
    let tb: Int32 = transB ? 1 : 0
    if parts == 1 {
      px_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ps[0].0, ps[0].1)
      return
    }
    let tiles = (n + nr - 1) / nr
    DispatchQueue.concurrentPerform(iterations: parts) { p in
      let j0 = tiles * p / parts * nr
      let j1 = min(n, tiles * (p + 1) / parts * nr)
      guard j1 > j0 else { return }
      // op(B)'s column j is B[·, j] (no transpose) or row j of B (transpose).
      let bj = transB ? b + j0 * ldb : b + j0
      px_sgemm(ta, tb, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc, ps[p].0, ps[p].1)
    }
  }
}

/// The naive triple loop `Gemm` is tested against (Double accumulation).
public enum GemmReference {
  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    for i in 0..<m {
      for j in 0..<n {
        var acc = 0.0
        for p in 0..<k {
          let av = transA ? a[p * lda + i] : a[i * lda + p]
          let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
          acc += Double(av) * Double(bv)
        }
        let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
        c[i * ldc + j] = Float(Double(alpha) * acc + old)
      }
    }
  }
}
