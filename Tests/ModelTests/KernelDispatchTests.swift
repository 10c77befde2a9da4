import CKernels
import Foundation
import Model
import XCTest

/// CKernels' run-time dispatch, and its portable C kernels against the AVX-512 ones (where this
/// CPU has them) and against `GemmReference` (everywhere, also in `PX_PORTABLE` builds).
final class KernelDispatchTests: XCTestCase {
  /// Whether /proc/cpuinfo lists AVX-512F and FMA (an oracle independent of CKernels' cpuid).
  private var cpuinfoHasAVX512: Bool {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let flags = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
    else { return false }
    let set = Set(flags.split(separator: " "))
    return set.contains("avx512f") && set.contains("fma")
  }

  func testDispatchPicksFastKernelHereAndPortableWhenForced() {
    let expected =
      px_path_compiled() == Int32(PX_PATH_AVX512) && cpuinfoHasAVX512
      ? Int32(PX_PATH_AVX512) : Int32(PX_PATH_PORTABLE)
    XCTAssertEqual(px_path_supported(), expected)
    XCTAssertEqual(px_path(), expected)
    XCTAssertEqual(Gemm.builtinAvailable, expected == Int32(PX_PATH_AVX512))
    let old = px_path_force(Int32(PX_PATH_PORTABLE))
    XCTAssertEqual(old, expected)
    XCTAssertEqual(px_path(), Int32(PX_PATH_PORTABLE))
    // Asking for more than is supported gives what is supported.
    px_path_force(Int32(PX_PATH_AVX512))
    XCTAssertEqual(px_path(), expected)
  }

  /// Runs `body` on the portable path, then on the supported one.
  private func onBothPaths(_ body: () -> [Float]) -> (portable: [Float], fast: [Float]) {
    let old = px_path_force(Int32(PX_PATH_PORTABLE))
    let p = body()
    px_path_force(old)
    return (p, body())
  }

  private func packs<R>(_ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> R) -> R {
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

  /// The portable SGEMM (plain, transposed, blocked columns with bias) against GemmReference.
  func testPortableGemmMatchesReference() {
    let old = px_path_force(Int32(PX_PATH_PORTABLE))
    defer { px_path_force(old) }
    for (m, n, k) in [(1, 1, 1), (7, 33, 5), (9, 65, 193), (3, 5, 0)] {
      for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = TestData.uniform(m * k, seed: 1), b = TestData.uniform(k * n, seed: 2)
        var c = TestData.uniform(m * n, seed: 3)
        var ref = c
        let (lda, ldb) = (max(ta ? m : k, 1), max(tb ? k : n, 1))
        packs { pa, pb in
          px_sgemm(ta ? 1 : 0, tb ? 1 : 0, m, n, k, 0.5, a, lda, b, ldb, 2, &c, n, pa, pb)
        }
        GemmReference.sgemm(
          transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
          beta: 2, c: &ref, ldc: n)
        assertClose(c, ref, tolerance: 1e-5, "portable gemm \(m)×\(n)×\(k) ta \(ta) tb \(tb)")
      }
    }
    // Blocked columns (a convolution's operands over NCHW memory) and a row bias.
    let (m, n, k, blk) = (9, 70, 33, 35)
    let ac = GemmColumns(block: blk, blockStride: m * blk + 3)
    let bc = GemmColumns(block: blk, blockStride: k * blk + 3)
    let cc = GemmColumns(block: blk, blockStride: m * blk + 3)
    let a = TestData.uniform(ac.offset(k - 1) + (m - 1) * blk + 1, seed: 4)
    let b = TestData.uniform(bc.offset(n - 1) + (k - 1) * blk + 1, seed: 5)
    var c = TestData.uniform(cc.offset(n - 1) + (m - 1) * blk + 1, seed: 6)
    var ref = c
    let bias = TestData.uniform(m, seed: 7)
    packs { pa, pb in
      px_sgemm_ex(
        0, 0, m, n, k, 1, a, blk, px_cols(blk: ac.block, bst: ac.blockStride), b, blk,
        px_cols(blk: bc.block, bst: bc.blockStride), 0.5, &c, blk,
        px_cols(blk: cc.block, bst: cc.blockStride), 0, bias, pa, pb)
    }
    GemmReference.sgemm(
      transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: blk, aColumns: ac,
      b: b, ldb: blk, bColumns: bc, beta: 0.5, c: &ref, ldc: blk, cColumns: cc, bias: bias)
    assertClose(c, ref, tolerance: 1e-5, "portable blocked gemm with bias")
  }

  /// The portable implicit-im2col GEMM (stride 1 and 2, and its transpose) against explicit
  /// portable im2col followed by GemmReference.
  func testPortableImplicitConvMatchesIm2col() {
    let old = px_path_force(Int32(PX_PATH_PORTABLE))
    defer { px_path_force(old) }
    for (stride, pad) in [(1, 1), (2, 1), (1, 0)] {
      let (s, ch, h, w, k, o) = (2, 3, 7, 6, 3, 5)
      let ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1
      let rows = ch * k * k, cols = s * ho * wo
      let x = TestData.uniform(s * ch * h * w, seed: 10)
      var col = [Float](repeating: .nan, count: rows * cols)
      if stride == 1 {
        px_im2col_s1(&col, x, s, ch, h, w, k, pad, ho, wo, 0, ch)
      } else {
        px_im2col_s2(&col, x, s, ch, h, w, k, pad, ho, wo, 0, ch)
      }
      var cv = px_conv(C: ch, h: h, w: w, k: k, pad: pad, transposed: 0, stride: stride, ho: ho, wo: wo)
      let wt = TestData.uniform(o * rows, seed: 11)
      var y = [Float](repeating: .nan, count: o * cols), ref = y
      packs { pa, pb in
        px_sgemm_conv(
          0, 0, o, cols, rows, 1, wt, rows, px_cols(blk: 0, bst: 0), x, 0, px_cols(blk: 0, bst: 0),
          &cv, 0, &y, cols, px_cols(blk: 0, bst: 0), 0, nil, pa, pb)
      }
      GemmReference.sgemm(
        transA: false, transB: false, m: o, n: cols, k: rows, alpha: 1, a: wt, lda: rows, b: col,
        ldb: cols, beta: 0, c: &ref, ldc: cols)
      assertClose(y, ref, tolerance: 1e-5, "portable implicit conv stride \(stride) pad \(pad)")
      // dW [O, C·k·k] = dY [O, S·ho·wo] · colᵀ.
      cv.transposed = 1
      let dy = TestData.uniform(o * cols, seed: 12)
      var dw = [Float](repeating: .nan, count: o * rows), dwRef = dw
      packs { pa, pb in
        px_sgemm_conv(
          0, 0, o, rows, cols, 1, dy, cols, px_cols(blk: 0, bst: 0), x, 0, px_cols(blk: 0, bst: 0),
          &cv, 0, &dw, rows, px_cols(blk: 0, bst: 0), 0, nil, pa, pb)
      }
      GemmReference.sgemm(
        transA: false, transB: true, m: o, n: rows, k: cols, alpha: 1, a: dy, lda: cols, b: col,
        ldb: cols, beta: 0, c: &dwRef, ldc: rows)
      assertClose(dw, dwRef, tolerance: 1e-5, "portable implicit conv dW stride \(stride) pad \(pad)")
    }
  }

  /// Every dispatched kernel: portable C against AVX-512 on the same inputs.
  func testPortableKernelsMatchFast() throws {
    try XCTSkipUnless(px_path_supported() == Int32(PX_PATH_AVX512), "no AVX-512 path here")
    let n = 37
    let x = TestData.uniform(n, seed: 20), dy = TestData.uniform(n, seed: 21)
    func check(_ what: String, tolerance: Double = 1e-6, _ body: () -> [Float]) {
      let r = onBothPaths(body)
      assertClose(r.portable, r.fast, tolerance: tolerance, what)
    }
    // px_sum on lengths through its 64-wide loop, its 16-wide tail and a partial mask.
    let long = TestData.uniform(200, seed: 22)
    for len in [1, 37, 64, 150, 200] {
      check("sum \(len)", tolerance: 1e-5) {
        var s = 0.5
        px_sum(long, len, &s)
        return [Float(s)]
      }
    }
    check("sum_sumsq", tolerance: 1e-5) {
      var (s, q) = (0.5, 0.25)
      px_sum_sumsq(x, n, &s, &q)
      return [Float(s), Float(q)]
    }
    check("sum_dot", tolerance: 1e-5) {
      var (s, d) = (0.0, 0.0)
      px_sum_dot(dy, x, n, &s, &d)
      return [Float(s), Float(d)]
    }
    check("sum_dot_relu", tolerance: 1e-5) {
      var (s, d) = (0.0, 0.0)
      px_sum_dot_relu(dy, x, n, 1.5, 0.2, &s, &d)
      return [Float(s), Float(d)]
    }
    for relu in [false, true] {
      check("bn_forward relu \(relu)") {
        var y = [Float](repeating: .nan, count: n), xh = y
        if relu { px_bn_relu_forward(&y, &xh, x, n, 0.1, 1.7, 1.5, 0.2) }
        else { px_bn_forward(&y, &xh, x, n, 0.1, 1.7, 1.5, 0.2) }
        return y + xh
      }
      check("bn_backward relu \(relu)") {
        var dx = [Float](repeating: .nan, count: n)
        if relu { px_bn_relu_backward(&dx, dy, x, n, 0.9, 0.05, 0.3, 1.5, 0.2) }
        else { px_bn_backward(&dx, dy, x, n, 0.9, 0.05, 0.3) }
        return dx
      }
    }
    check("add_relu") {
      var y = [Float](repeating: .nan, count: n)
      px_add_relu(&y, x, dy, n)
      return y
    }
    check("relu_backward") {
      var g = [Float](repeating: .nan, count: n)
      px_relu_backward(&g, x, dy, n)
      return g
    }
    // im2col/col2im, strides 1 and 2, odd plane, a channel slice.
    let (s, ch, h, w, k, pad) = (2, 3, 9, 7, 3, 1)
    let img = TestData.uniform(s * ch * h * w, seed: 22)
    for stride in [1, 2] {
      let ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1
      let count = ch * k * k * s * ho * wo
      let col = TestData.uniform(count, seed: 23)
      check("im2col stride \(stride)", tolerance: 0) {
        var d = [Float](repeating: .nan, count: count)
        let f = stride == 1 ? px_im2col_s1 : px_im2col_s2
        f(&d, img, s, ch, h, w, k, pad, ho, wo, 0, ch)
        return d
      }
      check("col2im stride \(stride)") {
        var d = img
        let f = stride == 1 ? px_col2im_s1 : px_col2im_s2
        f(&d, col, s, ch, h, w, k, pad, ho, wo, 1, ch)
        return d
      }
    }
    // Max pooling with ties (values on a coarse grid) and a NaN, odd plane.
    let (ph, pw) = (7, 9)
    var plane = TestData.uniform(ph * pw, seed: 24).map { ($0 * 3).rounded() }
    plane[10] = .nan
    check("maxpool2", tolerance: 0) {
      var y = [Float](repeating: 0, count: (ph / 2) * (pw / 2))
      var idx = [Int32](repeating: -1, count: y.count)
      px_maxpool2_plane(&y, &idx, plane, ph, pw)
      return y.map { $0.isNaN ? 1e30 : $0 } + idx.map { Float($0) }
    }
    check("maxpool2 backward", tolerance: 0) {
      var y = [Float](repeating: 0, count: (ph / 2) * (pw / 2))
      var idx = [Int32](repeating: -1, count: y.count)
      px_maxpool2_plane(&y, &idx, plane, ph, pw)
      var dx = [Float](repeating: .nan, count: ph * pw)
      px_maxpool2_plane_backward(&dx, idx, TestData.uniform(y.count, seed: 25), ph, pw)
      return dx
    }
    // BN + ReLU + 2×2 pooling: odd planes, rows of more than 16 and 32 values, windows of
    // ties (values on a coarse grid, and many ReLU zeros).
    for (fh, fw) in [(7, 9), (28, 28), (3, 3), (5, 40), (2, 2), (6, 67)] {
      let fx = TestData.uniform(fh * fw, seed: 26).map { ($0 * 4).rounded() / 2 }
      let (fho, fwo) = (fh / 2, fw / 2)
      let fdy = TestData.uniform(fho * fwo, seed: 27)
      let (mu, r, g, b): (Float, Float, Float, Float) = (0.3, 1.3, 1.2, -0.1)
      func pooled() -> ([Float], [Int32]) {
        var y = [Float](repeating: .nan, count: fho * fwo)
        var idx = [Int32](repeating: -1, count: y.count)
        px_bn_relu_pool2_forward(&y, &idx, fx, fh, fw, mu, r, g, b)
        return (y, idx)
      }
      check("bn_relu_pool2_forward \(fh)×\(fw)", tolerance: 1e-6) {
        let (y, idx) = pooled()
        return y + idx.map { Float($0) }
      }
      // The same values as BN-ReLU then pooling.
      var v = [Float](repeating: .nan, count: fh * fw), xh = v
      px_bn_relu_forward(&v, &xh, fx, fh * fw, mu, r, g, b)
      var py = [Float](repeating: .nan, count: fho * fwo)
      var pidx = [Int32](repeating: -1, count: py.count)
      px_maxpool2_plane(&py, &pidx, v, fh, fw)
      let (fy, fidx) = pooled()
      XCTAssertEqual(fy, py, "fused pool values \(fh)×\(fw)")
      XCTAssertEqual(fidx, pidx, "fused pool argmax \(fh)×\(fw)")
      var routed = [Float](repeating: .nan, count: fh * fw)
      px_maxpool2_plane_backward(&routed, fidx, fdy, fh, fw)
      check("sum_dot_relu_pool2 \(fh)×\(fw)", tolerance: 1e-5) {
        var (s1, d1) = (0.5, 0.25)
        px_sum_dot_relu_pool2(fdy, fidx, fx, fh, fw, mu, r, g, b, &s1, &d1)
        // … and what the unfused kernels sum on the routed gradient.
        var (s2, d2) = (0.5, 0.25)
        px_sum_dot_relu(routed, xh, fh * fw, g, b, &s2, &d2)
        return [Float(s1), Float(d1), Float(s2), Float(d2)]
      }
      check("bn_relu_pool2_backward \(fh)×\(fw)", tolerance: 1e-6) {
        var dx = [Float](repeating: .nan, count: fh * fw)
        px_bn_relu_pool2_backward(&dx, fdy, fidx, fx, fh, fw, mu, r, 0.9, 0.05, 0.3, g, b)
        return dx
      }
      var dxFused = [Float](repeating: .nan, count: fh * fw), dxPlain = dxFused
      px_bn_relu_pool2_backward(&dxFused, fdy, fidx, fx, fh, fw, mu, r, 0.9, 0.05, 0.3, g, b)
      px_bn_relu_backward(&dxPlain, routed, xh, fh * fw, 0.9, 0.05, 0.3, g, b)
      XCTAssertEqual(dxFused, dxPlain, "fused pool backward = BN-ReLU backward of the routed dy \(fh)×\(fw)")
    }
    // The 3×3 same convolution of one plane and its weight gradient (plain and bf16-rounded
    // g), against Conv2dReference too: planes narrower, wider than and straddling 16 columns,
    // a single row, up to 3 input channels.
    for (cc, ch3, cw3) in [(1, 28, 28), (3, 7, 9), (2, 5, 40), (1, 2, 2), (1, 1, 17), (3, 9, 16)] {
      let cx = TestData.uniform(cc * ch3 * cw3, seed: 28)
      let cwt = TestData.uniform(cc * 9, seed: 29)
      let cg = TestData.uniform(ch3 * cw3, seed: 30)
      check("conv3_plane \(cc)×\(ch3)×\(cw3)", tolerance: 1e-5) {
        var y = [Float](repeating: .nan, count: ch3 * cw3)
        px_conv3_plane(&y, cx, cc, ch3, cw3, cwt, 0.25)
        return y
      }
      var y = [Float](repeating: .nan, count: ch3 * cw3), ref = y
      px_conv3_plane(&y, cx, cc, ch3, cw3, cwt, 0.25)
      let bias: [Float] = [0.25]
      Conv2dReference.forward(
        &ref, cx, cwt, bias, n: 1, c: cc, h: ch3, w: cw3, o: 1, kernel: 3, stride: 1, padding: 1)
      assertClose(y, ref, tolerance: 1e-5, "conv3_plane vs Conv2dReference \(cc)×\(ch3)×\(cw3)")
      for round: Int32 in [0, 1] {
        check("conv3_wgrad_plane \(cc)×\(ch3)×\(cw3) round \(round)", tolerance: 1e-5) {
          var dw = [Float](repeating: 0.5, count: cc * 9)
          px_conv3_wgrad_plane(&dw, cg, cx, cc, ch3, cw3, round)
          return dw
        }
      }
      var dw = [Float](repeating: 0, count: cc * 9), dwRef = dw, dxRef = cx, dbRef: [Float] = [0]
      px_conv3_wgrad_plane(&dw, cg, cx, cc, ch3, cw3, 0)
      Conv2dReference.backward(
        &dxRef, &dwRef, &dbRef, cg, cx, cwt, n: 1, c: cc, h: ch3, w: cw3, o: 1, kernel: 3, stride: 1,
        padding: 1)
      assertClose(dw, dwRef, tolerance: 1e-5, "conv3_wgrad_plane vs Conv2dReference \(cc)×\(ch3)×\(cw3)")
      // round = 1 is the weight gradient of g rounded to bf16.
      var dwR = [Float](repeating: 0, count: cc * 9), dwRounded = dwR
      px_conv3_wgrad_plane(&dwR, cg, cx, cc, ch3, cw3, 1)
      px_conv3_wgrad_plane(&dwRounded, cg.map(px_bf16_round), cx, cc, ch3, cw3, 0)
      assertClose(dwR, dwRounded, tolerance: 1e-6, "conv3_wgrad_plane round \(cc)×\(ch3)×\(cw3)")
      XCTAssertNotEqual(dwR, dw, "rounding g changes the weight gradient \(cc)×\(ch3)×\(cw3)")
    }
    // GEMM family: implicit conv (same and strided), NHWC transpose and weight gradient.
    for (stride, cpad) in [(1, 1), (2, 1)] {
      let ho = (h + 2 * cpad - k) / stride + 1, wo = (w + 2 * cpad - k) / stride + 1
      let o = 10, rows = ch * k * k, cols = s * ho * wo
      var cv = px_conv(C: ch, h: h, w: w, k: k, pad: cpad, transposed: 0, stride: stride, ho: ho, wo: wo)
      let wt = TestData.uniform(o * rows, seed: 26), bias = TestData.uniform(o, seed: 27)
      check("implicit conv stride \(stride)", tolerance: 1e-5) {
        var y = [Float](repeating: .nan, count: o * cols)
        packs { pa, pb in
          px_sgemm_conv(
            0, 0, o, cols, rows, 1, wt, rows, px_cols(blk: 0, bst: 0), img, 0,
            px_cols(blk: 0, bst: 0), &cv, 0, &y, cols, px_cols(blk: 0, bst: 0), 0, bias, pa, pb)
        }
        return y
      }
    }
    let (wc, wh, ww, wm, ws) = (32, 5, 6, 8, 2)
    let hw = wh * ww
    let wx = TestData.uniform(ws * wc * hw, seed: 28), wdy = TestData.uniform(ws * wm * hw, seed: 29)
    check("nchw_to_nhwc", tolerance: 0) {
      var t = [Float](repeating: .nan, count: wx.count)
      px_nchw_to_nhwc(&t, wx, 0, ws, wc, hw)
      return t
    }
    var xt = [Float](repeating: 0, count: wx.count)
    px_nchw_to_nhwc(&xt, wx, 0, ws, wc, hw)
    var cv = px_conv(C: wc, h: wh, w: ww, k: 3, pad: 1, transposed: 1, stride: 1, ho: wh, wo: ww)
    check("conv_wgrad_nhwc", tolerance: 1e-5) {
      var g = [Float](repeating: .nan, count: wm * 9 * wc)
      packs { pa, pb in
        px_conv_wgrad_nhwc(
          wm, ws, &cv, 1, wdy, px_cols(blk: hw, bst: wm * hw), xt, 0, &g, 0, 9 * wc, pa, pb)
      }
      return g
    }
  }
}
