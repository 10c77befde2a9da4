import Dispatch

/// Splits memory-bound loops over `Gemm.threads` threads (a rank that owns several cores);
/// serial with one thread, so the single-thread path is unchanged.
enum Parallel {
  /// Calls `body(lo, hi)` on disjoint ranges covering `0..<count`, concurrently when
  /// `Gemm.threads > 1` and `count · costPerItem` is worth it (≥ 64K).
  static func ranges(_ count: Int, costPerItem: Int, _ body: (Int, Int) -> Void) {
    let t = min(Gemm.threads, count)
    guard t > 1, count * costPerItem >= 1 << 16 else {
      body(0, count)
      return
    }
    DispatchQueue.concurrentPerform(iterations: t) { p in
      let lo = count * p / t
      let hi = count * (p + 1) / t
      if hi > lo { body(lo, hi) }
    }
  }
}
