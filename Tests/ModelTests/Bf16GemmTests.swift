import CKernels
import Foundation
import Model
import XCTest

/// The bf16 GEMM (`px_bgemm_conv`, `Gemm.sgemm(precision: .bf16)`) and the bf16 layers.
///
/// Error bounds, with u = 2⁻⁸ (bf16 keeps 8 significant bits; round to nearest even is within
/// half a unit in the last place, u relative) and S = Σₖ|aₖ||bₖ| of the output element:
/// - rounding the operands: |ãb̃ − ab| ≤ (2u + u²)|ab|; ãb̃ is exact in fp32 (8 × 8 bits);
/// - summing K exact products in fp32, in any order: ≤ K·2⁻²⁴·Σ|ãb̃| ≤ K·2⁻²⁴(1 + u)²·S, plus
///   α, β and the bias (two more roundings).
/// So a bf16 result is within (2u + u² + (K + 2)·2⁻²⁴·1.01)·S of the exact product (fp32
/// reference: add the fp32 result's own (K + 2)·2⁻²⁴·S), and two bf16 paths that round the
/// operands identically and sum the same exact products in different orders are within
/// 2(K + 2)·2⁻²⁴·1.01·S of each other — not bit for bit (vdpbf16ps and tdpbf16ps also flush
/// denormal partial sums to zero, which the bound covers: each flush is below 2⁻¹²⁶).
final class Bf16GemmTests: XCTestCase {
  static let u = pow(2.0, -8.0)
  /// Operand rounding plus fp32 summation of K products (see the class comment).
  static func againstExact(_ k: Int) -> Double { 2 * u + u * u + Double(k + 2) * pow(2, -24) * 1.01 }
  /// Two fp32 summation orders of the same bf16 products.
  static func betweenPaths(_ k: Int) -> Double { 2 * Double(k + 2) * pow(2, -24) * 1.01 }

  /// /proc/cpuinfo's flags (an oracle independent of CKernels' cpuid), and the model name.
  static let cpuinfo: (flags: Set<Substring>, model: String) = {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return ([], "?") }
    let lines = text.split(separator: "\n")
    let flags = lines.first(where: { $0.hasPrefix("flags") }).map { Set($0.split(separator: " ")) } ?? []
    let model = lines.first(where: { $0.hasPrefix("model name") })?.split(separator: ":").last ?? "?"
    return (flags, model.trimmingCharacters(in: .whitespaces))
  }()

  static var expectedPath: Int32 {
    let f = cpuinfo.flags
    guard px_path_supported() == Int32(PX_PATH_AVX512), f.contains("avx512_bf16") else {
      return Int32(PX_BF16_PORTABLE)
    }
    return f.contains("amx_bf16") && f.contains("amx_tile") ? Int32(PX_BF16_AMX) : Int32(PX_BF16_AVX512)
  }

  /// Every path this CPU runs, fastest last.
  static var paths: [Int32] { (0...px_bf16_path_supported()).map { $0 } }
  static func name(_ p: Int32) -> String {
    p == Int32(PX_BF16_AMX) ? "amx" : p == Int32(PX_BF16_AVX512) ? "avx512-bf16" : "portable"
  }

  func testDispatchPicksWhatCpuinfoListsAndForcingLowersIt() {
    print("bf16 GEMM path here: \(Gemm.bf16SupportedPathName) (\(Self.cpuinfo.model))")
    XCTAssertEqual(px_bf16_path_supported(), Self.expectedPath)
    XCTAssertEqual(px_bf16_path(), Self.expectedPath)
    let old = px_bf16_path_force(Int32(PX_BF16_PORTABLE))
    defer { px_bf16_path_force(old) }
    XCTAssertEqual(px_bf16_path(), Int32(PX_BF16_PORTABLE))
    XCTAssertEqual(Gemm.bf16PathName, "portable")
    px_bf16_path_force(Int32(PX_BF16_AMX))
    XCTAssertEqual(px_bf16_path(), Self.expectedPath, "a path above the supported one is clamped")
  }

  /// The AMX kernels run (and match the portable twin) where the CPU has them.
  func testAMXPathRunsWhereTheCPUHasIt() throws {
    try XCTSkipUnless(
      Self.cpuinfo.flags.contains("amx_bf16"),
      "this CPU (\(Self.cpuinfo.model)) lists no amx_bf16 in /proc/cpuinfo: the AMX kernels are compiled but cannot run here")
    XCTAssertEqual(px_bf16_path_supported(), Int32(PX_BF16_AMX), "amx_bf16 listed but AMX not usable")
    let (m, n, k) = (70, 300, 333)
    let a = TestData.uniform(m * k, seed: 1), b = TestData.uniform(k * n, seed: 2)
    let amx = run(Int32(PX_BF16_AMX), m: m, n: n, k: k, a: a, b: b)
    let portable = run(Int32(PX_BF16_PORTABLE), m: m, n: n, k: k, a: a, b: b)
    let s = run(Int32(PX_BF16_PORTABLE), m: m, n: n, k: k, a: a.map(abs), b: b.map(abs))
    assertWithin(amx, portable, s, Self.betweenPaths(k), "amx vs portable")
  }

  // MARK: Rounding

  /// Values where round-to-nearest-even decides: exact ties both ways, just off ties, zeros,
  /// denormals (to a zero of their sign, as vcvtneps2bf16), the overflow to infinity, NaN.
  static let roundingCases: [(Float, Float)] = [
    (1, 1), (1 + 0x1p-8, 1), (1 + 3 * 0x1p-8, 1 + 0x1p-6), (1 + 0x1p-8 + 0x1p-20, 1 + 0x1p-7),
    (-(1 + 0x1p-8), -1), (3 * 0x1p-9, 3 * 0x1p-9), (0.1, 0.10009765625), (0, 0), (-0.0, -0.0),
    (1e-40, 0), (-1e-40, -0.0), (Float.leastNormalMagnitude, Float.leastNormalMagnitude),
    (Float.greatestFiniteMagnitude, .infinity), (.infinity, .infinity), (-65535, -65536),
  ]

  func testRoundingIsNearestEvenWithDenormalsToZero() {
    for (x, r) in Self.roundingCases {
      let got = px_bf16_round(x)
      XCTAssertEqual(got.bitPattern, r.bitPattern, "round(\(x)) = \(got), expected \(r)")
    }
    XCTAssertTrue(px_bf16_round(.nan).isNaN)
  }

  /// The fast paths' packing rounds each element as px_bf16_round does: one product with 1 per
  /// output (K = 1) is exact, so C is the rounded operand itself (equal as values: the fp32
  /// accumulator starts at +0, so −0 comes out +0). Every operand layout is checked: B plain
  /// and transposed, A plain and transposed.
  func testPackingRoundsEachElementAsTheReference() {
    var values = Self.roundingCases.map(\.0)
    var rng = SplitMix64(seed: 9)
    // Random bit patterns of every exponent, ties among them (low 16 bits 0x8000).
    for i in 0..<1000 {
      var bits = UInt32(truncatingIfNeeded: rng.next())
      if i % 3 == 0 { bits = (bits & 0xFFFF_0000) | 0x8000 }
      let f = Float(bitPattern: bits)
      if f.isFinite { values.append(f) }
    }
    let one: [Float] = [1]
    for p in Self.paths.dropFirst() {
      for tb in [false, true] {
        let c = run(p, m: 1, n: values.count, k: 1, a: one, b: values, tb: tb)
        for (x, y) in zip(values, c) where px_bf16_round(x) != y {
          XCTFail("\(Self.name(p)) B (tb \(tb)) packs \(x) as \(y), expected \(px_bf16_round(x))")
          break
        }
      }
      for ta in [false, true] {
        let c = run(p, m: values.count, n: 1, k: 1, a: values, b: one, ta: ta)
        for (x, y) in zip(values, c) where px_bf16_round(x) != y {
          XCTFail("\(Self.name(p)) A (ta \(ta)) packs \(x) as \(y), expected \(px_bf16_round(x))")
          break
        }
      }
    }
  }

  // MARK: Fast paths against the portable twin, and against the fp32 reference

  /// Shapes crossing every blocking edge: M over PX_MC (several row blocks: B packed as whole
  /// panels), K over PX_KC and odd (several passes, a zero-padded last pair), N over PX_NC and
  /// not a multiple of 32, and tiny ones.
  static let shapes = [(64, 1100, 576), (130, 70, 517), (7, 33, 5), (33, 300, 1), (1, 1, 2), (129, 97, 64)]

  func testFastPathsMatchPortableTwinOnPlainOperands() {
    for p in Self.paths.dropFirst() {
      for (m, n, k) in Self.shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
          let a = TestData.uniform(m * k, seed: 1), b = TestData.uniform(k * n, seed: 2)
          let c0 = TestData.uniform(m * n, seed: 3)
          let fast = run(p, m: m, n: n, k: k, a: a, b: b, ta: ta, tb: tb, alpha: 0.5, beta: 0.25, c: c0)
          let twin = run(Int32(PX_BF16_PORTABLE), m: m, n: n, k: k, a: a, b: b, ta: ta, tb: tb, alpha: 0.5, beta: 0.25, c: c0)
          // S of α·AB + β·C: |α|·Σ|a||b| + |β||c|.
          let s = run(
            Int32(PX_BF16_PORTABLE), m: m, n: n, k: k, a: a.map(abs), b: b.map(abs), ta: ta, tb: tb, alpha: 0.5,
            beta: 0.25, c: c0.map(abs))
          assertWithin(fast, twin, s, Self.betweenPaths(k), "\(Self.name(p)) vs portable \(m)×\(n)×\(k) ta \(ta) tb \(tb)")
        }
      }
    }
  }

  /// Blocked columns of A, B and C (a convolution's operands over NCHW memory) and a row bias,
  /// split over column slices as `Gemm` does (jorg).
  func testFastPathsMatchPortableTwinOnBlockedColumnsBiasAndSlices() {
    let (m, n, k, blk) = (9, 170, 45, 35)
    let ac = GemmColumns(block: blk, blockStride: m * blk + 3)
    let bc = GemmColumns(block: blk, blockStride: k * blk + 3)
    let cc = GemmColumns(block: blk, blockStride: m * blk + 3)
    let a = TestData.uniform(ac.offset(k - 1) + (m - 1) * blk + 1, seed: 4)
    let b = TestData.uniform(bc.offset(n - 1) + (k - 1) * blk + 1, seed: 5)
    let c0 = TestData.uniform(cc.offset(n - 1) + (m - 1) * blk + 1, seed: 6)
    let bias = TestData.uniform(m, seed: 7)
    func go(_ p: Int32, _ a: [Float], _ b: [Float], _ c0: [Float], _ bias: [Float]) -> [Float] {
      var c = c0
      let old = px_bf16_path_force(p)
      defer { px_bf16_path_force(old) }
      packs { pa, pb in
        // Two slices of N, as two threads would take them.
        for (j0, j1) in [(0, 96), (96, n)] {
          px_bgemm_conv(
            0, 0, m, j1 - j0, k, 0.5, a, blk, px_cols(blk: ac.block, bst: ac.blockStride), b, blk,
            px_cols(blk: bc.block, bst: bc.blockStride), nil, 0.25, &c, blk,
            px_cols(blk: cc.block, bst: cc.blockStride), j0, bias, pa, pb)
        }
      }
      return c
    }
    let twin = go(Int32(PX_BF16_PORTABLE), a, b, c0, bias)
    let s = go(Int32(PX_BF16_PORTABLE), a.map(abs), b.map(abs), c0.map(abs), bias.map(abs))
    for p in Self.paths.dropFirst() {
      assertWithin(go(p, a, b, c0, bias), twin, s, Self.betweenPaths(k), "\(Self.name(p)) blocked + bias")
    }
  }

  /// The implicit im2col operands (forward B, and its transpose for the weight gradient):
  /// "same" shapes (masked runs), strided and not-"same" ones (gathers), planes under 16.
  func testFastPathsMatchPortableTwinOnImplicitConvolutions() {
    // (samples, C, h, w, O, k, pad, stride)
    let cases = [
      (3, 5, 7, 7, 9, 3, 1, 1), (2, 16, 28, 28, 20, 3, 1, 1), (3, 5, 28, 28, 6, 3, 1, 2),
      (2, 4, 14, 14, 8, 1, 0, 2), (2, 3, 9, 11, 4, 3, 0, 1), (2, 3, 6, 7, 136, 3, 1, 1), (4, 6, 2, 2, 7, 1, 0, 1),
    ]
    for (s, c, h, w, o, kk, pad, st) in cases {
      let ho = (h + 2 * pad - kk) / st + 1, wo = (w + 2 * pad - kk) / st + 1
      let rows = c * kk * kk, cols = s * ho * wo
      let x = TestData.uniform(s * c * h * w, seed: 11)
      for transposed in [false, true] {
        var cv = px_conv(C: c, h: h, w: w, k: kk, pad: pad, transposed: transposed ? 1 : 0, stride: st, ho: ho, wo: wo)
        // Forward: C [O, cols] = W [O, rows]·col. Weight gradient: C [O, rows] = dY [O, cols]·colᵀ.
        let (m, n, k) = transposed ? (o, rows, cols) : (o, cols, rows)
        let a = TestData.uniform(m * k, seed: 12)
        func go(_ p: Int32, _ a: [Float], _ x: [Float]) -> [Float] {
          var out = [Float](repeating: 0, count: m * n)
          let old = px_bf16_path_force(p)
          defer { px_bf16_path_force(old) }
          packs { pa, pb in
            px_bgemm_conv(
              0, 0, m, n, k, 1, a, k, px_cols(blk: 0, bst: 0), x, 0, px_cols(blk: 0, bst: 0), &cv, 0, &out, n,
              px_cols(blk: 0, bst: 0), 0, nil, pa, pb)
          }
          return out
        }
        let twin = go(Int32(PX_BF16_PORTABLE), a, x)
        let sums = go(Int32(PX_BF16_PORTABLE), a.map(abs), x.map(abs))
        for p in Self.paths.dropFirst() {
          assertWithin(
            go(p, a, x), twin, sums, Self.betweenPaths(k),
            "\(Self.name(p)) conv \(s)×\(c)×\(h)×\(w) → \(o) k \(kk) pad \(pad) stride \(st) transposed \(transposed)")
        }
      }
    }
  }

  /// Every path against the exact product of the fp32 operands (`GemmReference`, Double):
  /// within the bf16 bound, and measurably off it — a path that skipped the rounding (an fp32
  /// GEMM) would be ~2⁻²⁰ of S off; bf16 is ~2⁻¹¹ (worst measured printed), the check is > 2⁻¹⁴.
  func testEveryPathIsWithinTheBf16BoundOfTheFp32Product() {
    for p in Self.paths {
      for (m, n, k) in [(64, 400, 576), (40, 70, 517)] {
        let a = TestData.uniform(m * k, seed: 21), b = TestData.uniform(k * n, seed: 22)
        let got = run(p, m: m, n: n, k: k, a: a, b: b)
        var exact = [Float](repeating: 0, count: m * n), s = exact
        GemmReference.sgemm(
          transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &exact,
          ldc: n)
        GemmReference.sgemm(
          transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.map(abs), lda: k, b: b.map(abs), ldb: n,
          beta: 0, c: &s, ldc: n)
        let worst = assertWithin(got, exact, s, Self.againstExact(k), "\(Self.name(p)) vs fp32 \(m)×\(n)×\(k)")
        XCTAssertGreaterThan(worst, pow(2, -14), "\(Self.name(p)): error \(worst)·S is not bf16's — operands not rounded?")
      }
    }
  }

  /// `Gemm.sgemm(precision: .bf16)` split over threads equals one thread's result (each
  /// column slice is computed alike) and the fp32 `Gemm` differs from it.
  func testGemmEntryPointThreadsAndPrecision() {
    let (m, n, k) = (64, 2000, 300)
    let a = TestData.uniform(m * k, seed: 31), b = TestData.uniform(k * n, seed: 32)
    func go(_ precision: GemmPrecision, threads: Int) -> [Float] {
      let old = Gemm.threads
      Gemm.threads = threads
      defer { Gemm.threads = old }
      var c = [Float](repeating: 0, count: m * n)
      Gemm.sgemm(
        transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &c, ldc: n,
        precision: precision)
      return c
    }
    let one = go(.bf16, threads: 1), two = go(.bf16, threads: 2)
    XCTAssertEqual(one, two, "bf16 GEMM split over 2 threads differs from 1")
    let fp32 = go(.fp32, threads: 1)
    XCTAssertNotEqual(one, fp32, "precision .bf16 ran the fp32 GEMM")
    XCTAssertEqual(one, run(px_bf16_path(), m: m, n: n, k: k, a: a, b: b), "Gemm.sgemm(.bf16) is px_bgemm_conv")
  }

  // MARK: Helpers

  func packs<R>(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> R) -> R {
    let a = UnsafeMutableRawPointer.allocate(byteCount: Int(PX_MC) * Int(PX_KC) * 4, alignment: 64)
    let b = UnsafeMutableRawPointer.allocate(byteCount: Int(PX_KC) * Int(PX_NC) * 4, alignment: 64)
    defer {
      a.deallocate()
      b.deallocate()
    }
    return body(
      a.bindMemory(to: Float.self, capacity: Int(PX_MC) * Int(PX_KC)),
      b.bindMemory(to: Float.self, capacity: Int(PX_KC) * Int(PX_NC)))
  }

  /// C = α·op(A)·op(B) + β·C on bf16 path `p`, plain row-major operands.
  func run(
    _ p: Int32, m: Int, n: Int, k: Int, a: [Float], b: [Float], ta: Bool = false, tb: Bool = false,
    alpha: Float = 1, beta: Float = 0, c c0: [Float]? = nil
  ) -> [Float] {
    var c = c0 ?? [Float](repeating: 0, count: m * n)
    let old = px_bf16_path_force(p)
    defer { px_bf16_path_force(old) }
    let plain = px_cols(blk: 0, bst: 0)
    packs { pa, pb in
      px_bgemm_conv(
        ta ? 1 : 0, tb ? 1 : 0, m, n, k, alpha, a, max(ta ? m : k, 1), plain, b, max(tb ? k : n, 1), plain, nil,
        beta, &c, max(n, 1), plain, 0, nil, pa, pb)
    }
    return c
  }
}

/// Fails unless |actual − expected| ≤ c·s + 1e-30 element by element (s: that element's Σ|a||b|
/// or the like); prints and returns the worst |actual − expected| / s.
@discardableResult
func assertWithin(
  _ actual: [Float], _ expected: [Float], _ s: [Float], _ c: Double, _ what: String,
  file: StaticString = #filePath, line: UInt = #line
) -> Double {
  XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
  XCTAssertEqual(s.count, expected.count, "\(what): count of the bound", file: file, line: line)
  var worst = 0.0, at = 0, failures = 0
  for i in 0..<min(actual.count, expected.count, s.count) {
    let d = abs(Double(actual[i]) - Double(expected[i]))
    let r = d / max(Double(s[i]), 1e-30)
    if !(r <= worst) { worst = r; at = i }
    if !(d <= c * Double(s[i]) + 1e-30) { failures += 1 }
  }
  XCTAssertEqual(
    failures, 0,
    "\(what): \(failures) elements past \(c)·S; worst \(worst)·S at \(at) (\(actual[at]) vs \(expected[at]))",
    file: file, line: line)
  print("bf16 \(what): worst \(String(format: "%.3g", worst))·S (bound \(String(format: "%.3g", c))·S)")
  return worst
}
