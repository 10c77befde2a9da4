import Model
import XCTest

/// The blocked AVX-512 `Gemm` (and its OpenBLAS fallback) against the naive `GemmReference`.
final class GemmTests: XCTestCase {
  func testFastMatchesNaive() {
    // (m, n, k): edges of every blocking level (MR 8, NR 32, KC 192, MC 128, NC 4096).
    let shapes = [
      (1, 1, 1), (7, 33, 5), (8, 32, 192), (9, 65, 193), (130, 70, 400), (64, 4100, 20), (3, 5, 0),
    ]
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
              let c0 =
                beta == 0
                ? [Float](repeating: .nan, count: m * n)
                : TestData.uniform(m * n, seed: seed + 2000)
              var c = c0
              var ref = c0
              let lda = ta ? m : k
              let ldb = tb ? k : n
              a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                  Gemm.sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                    lda: max(lda, 1), b: bp.baseAddress!, ldb: max(ldb, 1), beta: beta, c: &c,
                    ldc: n)
                  GemmReference.sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                    lda: max(lda, 1), b: bp.baseAddress!, ldb: max(ldb, 1), beta: beta, c: &ref,
                    ldc: n)
                }
              }
              let tol = 1e-5 * Double(max(k, 1)).squareRoot() * 4
              assertClose(
                c, ref, tolerance: tol,
                "gemm \(m)×\(n)×\(k) ta \(ta) tb \(tb) α \(alpha) β \(beta) threads \(threads)")
            }
          }
        }
      }
    }
  }

  /// Column layouts (blocked A/B/C columns, as a convolution over NCHW memory) and row bias.
  func testBlockedColumnsAndBiasMatchNaive() {
    // (m, n, k, block): blocks smaller than, equal to and not dividing the 32-column tile.
    let shapes = [
      (8, 40, 9, 9), (13, 96, 20, 16), (20, 98, 200, 49), (9, 70, 33, 35), (64, 33, 7, 1),
    ]
    // (builtin, threads): the AVX-512 kernel serial and split, and the dense-copy fallback.
    for (builtin, threads) in [(true, 1), (true, 2), (false, 1)] {
      Gemm.threads = threads
      Gemm.useBuiltin = builtin
      defer {
        Gemm.threads = 1
        Gemm.useBuiltin = true
      }
      for (si, (m, n, k, blk)) in shapes.enumerated() {
        for (ta, tb) in [(false, false), (false, true), (true, false)] {
          for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1)] {
            for withBias in [false, true] {
              let seed = UInt64(si * 32 + (ta ? 8 : 0) + (tb ? 4 : 0))
              // Blocked layouts: A's K columns in blocks of blk (when not transposed), B's and
              // C's N columns in blocks of blk, each block `rows·blk + 3` floats apart.
              let aCols = ta ? GemmColumns.plain : GemmColumns(block: blk, blockStride: m * blk + 3)
              let bCols = tb ? GemmColumns.plain : GemmColumns(block: blk, blockStride: k * blk + 3)
              let cCols = GemmColumns(block: blk, blockStride: m * blk + 3)
              let lda = ta ? m : blk
              let ldb = tb ? k : blk
              let aSize = ta ? k * m : aCols.offset(k - 1) + (m - 1) * lda + 1
              let bSize = tb ? n * k : bCols.offset(n - 1) + (k - 1) * ldb + 1
              let cSize = cCols.offset(n - 1) + (m - 1) * blk + 1
              let a = TestData.uniform(aSize, seed: seed)
              let b = TestData.uniform(bSize, seed: seed + 1000)
              let bias = TestData.uniform(m, seed: seed + 3000)
              let c0 =
                beta == 0
                ? [Float](repeating: .nan, count: cSize)
                : TestData.uniform(cSize, seed: seed + 2000)
              var c = c0
              var ref = c0
              a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                  bias.withUnsafeBufferPointer { biasp in
                    let bs = withBias ? biasp.baseAddress : nil
                    Gemm.sgemm(
                      transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                      lda: lda, aColumns: aCols, b: bp.baseAddress!, ldb: ldb, bColumns: bCols,
                      beta: beta, c: &c, ldc: blk, cColumns: cCols, bias: bs)
                    GemmReference.sgemm(
                      transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: ap.baseAddress!,
                      lda: lda, aColumns: aCols, b: bp.baseAddress!, ldb: ldb, bColumns: bCols,
                      beta: beta, c: &ref, ldc: blk, cColumns: cCols, bias: bs)
                  }
                }
              }
              // Gaps between blocks are not written: compare written positions only.
              var got: [Float] = []
              var want: [Float] = []
              for i in 0..<m {
                for j in 0..<n {
                  got.append(c[i * blk + cCols.offset(j)])
                  want.append(ref[i * blk + cCols.offset(j)])
                }
              }
              let tol = 1e-5 * Double(max(k, 1)).squareRoot() * 4
              assertClose(
                got, want, tolerance: tol,
                "blocked gemm \(m)×\(n)×\(k)/\(blk) ta \(ta) tb \(tb) β \(beta) bias \(withBias) threads \(threads) builtin \(builtin)"
              )
            }
          }
        }
      }
    }
  }
}
