import Model
import XCTest

/// The im2col + GEMM `Conv2d` against the direct-loop `Conv2dReference`.
final class Conv2dReferenceTests: XCTestCase {
  func testFastMatchesNaive() throws {
    // (n, c, o, size, kernel, stride, padding, bias, columnBudget)
    let cases: [(Int, Int, Int, Int, Int, Int, Int, Bool, Int)] = [
      (3, 3, 5, 9, 3, 1, 1, true, 1 << 21),  // whole batch in one chunk
      (3, 3, 5, 9, 3, 1, 1, true, 1),  // one sample per chunk
      (5, 4, 6, 8, 3, 2, 1, false, 2 * 36 * 16),  // chunks of 2, 2, 1
      (2, 4, 6, 8, 1, 2, 0, false, 1 << 21),
      (2, 2, 3, 7, 5, 2, 2, true, 1),
      (2, 3, 2, 6, 4, 3, 0, true, 1 << 21),
    ]
    // The implicit GEMMs (the default where the CPU has AVX-512) take no chunks: the budget
    // cases exercise the chunked im2col + GEMM path (its dW accumulates over chunks) only with
    // `usesImplicitGemm` off.
    for implicit in [true, false] {
    for (ci, (n, c, o, size, k, s, p, bias, budget)) in cases.enumerated() {
      let arena = ParameterArena()
      let conv = Conv2d(
        arena: arena, name: "c", inChannels: c, outChannels: o, kernel: k, stride: s, padding: p,
        bias: bias)
      conv.columnBudget = budget
      conv.usesImplicitGemm = implicit
      arena.allocate(seed: UInt64(ci))
      let xs = Shape(n, c, size, size)
      let xv = TestData.uniform(xs.count, seed: UInt64(100 + ci))
      let x = TestData.tensor(xs, xv)
      let y = try conv.forward(x, training: true)
      let ys = conv.outputShape(xs)
      XCTAssertEqual(y.shape, ys)
      let w = arena.values(of: arena.parameter(named: "c.weight")!)
      let b = bias ? arena.values(of: arena.parameter(named: "c.bias")!) : nil
      var yRef = [Float](repeating: 0, count: ys.count)
      xv.withUnsafeBufferPointer { xp in
        w.withUnsafeBufferPointer { wp in
          Conv2dReference.forward(
            &yRef, xp.baseAddress!, wp.baseAddress!, b,
            n: n, c: c, h: size, w: size, o: o, kernel: k, stride: s, padding: p)
        }
      }
      assertClose(y.toArray(), yRef, tolerance: 1e-5, "case \(ci) implicit \(implicit) y")

      let dyv = TestData.uniform(ys.count, seed: UInt64(200 + ci))
      arena.zeroGrads()
      let dx = try conv.backward(TestData.tensor(ys, dyv)).toArray()
      var dxRef = [Float](repeating: 0, count: xs.count)
      var dwRef = [Float](repeating: 0, count: w.count)
      var dbRef = [Float](repeating: 0, count: o)
      xv.withUnsafeBufferPointer { xp in
        w.withUnsafeBufferPointer { wp in
          dbRef.withUnsafeMutableBufferPointer { dbp in
            Conv2dReference.backward(
              &dxRef, &dwRef, bias ? dbp.baseAddress! : nil, dyv, xp.baseAddress!,
              wp.baseAddress!, n: n, c: c, h: size, w: size, o: o, kernel: k, stride: s,
              padding: p)
          }
        }
      }
      assertClose(dx, dxRef, tolerance: 1e-5, "case \(ci) implicit \(implicit) dx")
      assertClose(
        arena.gradient(of: arena.parameter(named: "c.weight")!), dwRef, tolerance: 1e-5,
        "case \(ci) implicit \(implicit) dweight")
      if bias {
        assertClose(
          arena.gradient(of: arena.parameter(named: "c.bias")!), dbRef, tolerance: 1e-5,
          "case \(ci) implicit \(implicit) dbias")
      }
    }
    }
  }
}
