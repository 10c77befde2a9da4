import Model
import XCTest

/// The blocked AVX-512 `Gemm` (and its OpenBLAS fallback) against the naive `GemmReference`.
final class GemmTests: XCTestCase {
  func testFastMatchesNaive() {
    // (m, n, k): edges of every blocking level (MR 8, NR 32, KC 192, MC 128, NC 4096).
    let shapes = [(1, 1, 1), (7, 33, 5), (8, 32, 192), (9, 65, 193), (130, 70, 400), (64, 4100, 20), (3, 5, 0)]
    for threads in [1, 3] {
      Gemm.threads = threads
      defer { Gemm.threads = 1 }
      for (si, (m, n, k)) in shapes.enumerated() {
        for ta in [false, true] {
          for tb in [false, true] {
            for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (2, -0.5)] {
              let seed = UInt64(si * 16 + (ta ? 8 : 0) + (tb ? 4 : 0))
              let a = TestData.uniform(m * k, seed: seed)
              let b = TestData.uniform(k * n, seed: seed + 1000)
              // beta = 0 must ignore NaN in C.
              let c0 = beta == 0 ? [Float](repeating: .nan, count: m * n) : TestData.uniform(m * n, seed: seed + 2000)
              var c = c0
              var ref = c0
              let lda = ta ? m : k
              let ldb = tb ? k : n
              a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                  Gemm.sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                    lda: max(lda, 1), b: bp.baseAddress!, ldb: max(ldb, 1), beta: beta, c: &c, ldc: n)
                  GemmReference.sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                    lda: max(lda, 1), b: bp.baseAddress!, ldb: max(ldb, 1), beta: beta, c: &ref, ldc: n)
                }
              }
              let tol = 1e-5 * Double(max(k, 1)).squareRoot() * 4
              assertClose(c, ref, tolerance: tol, "gemm \(m)×\(n)×\(k) ta \(ta) tb \(tb) α \(alpha) β \(beta) threads \(threads)")
            }
          }
        }
      }
    }
  }
}
