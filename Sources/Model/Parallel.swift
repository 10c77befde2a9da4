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
    perform(t) { p in
      let lo = count * p / t
      let hi = count * (p + 1) / t
      if hi > lo { body(lo, hi) }
    }
  }

  /// `DispatchQueue.concurrentPerform` for kernels whose iterations write disjoint parts of
  /// buffers the caller owns for the duration of the call (raw pointers, which the type
  /// system cannot show to be shared safely — the one place that promise is made).
  static func perform(_ iterations: Int, _ body: (Int) -> Void) {
    withoutActuallyEscaping(body) { body in
      let shared = UncheckedSendable(body)
      DispatchQueue.concurrentPerform(iterations: iterations) { shared.value($0) }
    }
  }
}

/// A value handed to concurrent iterations that only touch disjoint memory through it.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
