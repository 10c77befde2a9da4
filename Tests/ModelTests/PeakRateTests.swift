import Foundation
import Model
import XCTest

/// The measured per-core peaks `bench step` and `bench peak` report (`PeakUnit`,
/// `px_peak_gflops`). What must hold on every CPU: a supported unit gives a positive, finite
/// rate; an unsupported one 0; the units the GEMMs are said to run on are the ones dispatch
/// picked. Where the CPU has both, `vdpbf16ps` does twice the multiply-adds of a 512-bit FMA per
/// instruction at the same throughput (Intel's and AMD's cores alike), so its loop must measure
/// well above the fp32 one — a loop whose multiply-adds wait on each other (latency-bound) or
/// that the compiler folded would not.
final class PeakRateTests: XCTestCase {
  func testSupportedUnitsMeasurePositiveAndUnsupportedZero() {
    for u in PeakUnit.allCases {
      let g = u.measure(seconds: 0.03)
      if u.isSupported {
        XCTAssert(g > 0 && g.isFinite, "\(u.name): \(g) GFLOP/s")
        // No core does a tera-FLOP per second on one of these vector units (AMX: ~1.1).
        XCTAssertLessThan(g, 5000, u.name)
      } else {
        XCTAssertEqual(g, 0, "\(u.name) is not supported here, so nothing is measured")
      }
    }
    XCTAssertEqual(PeakUnit.fp32AVX512.measure(seconds: 0), 0, "no time, no measurement")
  }

  func testGemmUnitsAreTheDispatchedPaths() {
    switch Gemm.bf16PathName {
    case "amx": XCTAssertEqual(PeakUnit.forGemm(.bf16), .bf16AMX)
    case "avx512-bf16": XCTAssertEqual(PeakUnit.forGemm(.bf16), .bf16AVX512)
    default: XCTAssertEqual(PeakUnit.forGemm(.bf16), PeakUnit.forGemm(.fp32))
    }
    if Gemm.builtinAvailable { XCTAssertEqual(PeakUnit.forGemm(.fp32), .fp32AVX512) }
    if let u = PeakUnit.forGemm(.fp32) { XCTAssert(u.isSupported) }
  }

  func testBF16LoopDoublesTheFP32Loop() throws {
    guard PeakUnit.bf16AVX512.isSupported, PeakUnit.fp32AVX512.isSupported else {
      throw XCTSkip("needs AVX-512-BF16 (this CPU: \(Gemm.bf16SupportedPathName))")
    }
    // Interleaved, best of each, so a neighbour's load hits both alike.
    var fp32 = 0.0, bf16 = 0.0
    for _ in 0..<3 {
      fp32 = max(fp32, PeakUnit.fp32AVX512.measure(seconds: 0.03))
      bf16 = max(bf16, PeakUnit.bf16AVX512.measure(seconds: 0.03))
    }
    XCTAssertGreaterThan(bf16, 1.3 * fp32, "vdpbf16ps \(bf16) vs FMA \(fp32) GFLOP/s: expected ≈ 2×")
    XCTAssertLessThan(bf16, 3 * fp32, "vdpbf16ps \(bf16) vs FMA \(fp32) GFLOP/s: expected ≈ 2×")
  }
}
