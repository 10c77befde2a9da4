import Model
import XCTest

/// Finite-difference checks of FiLM and of the conditioned conv4 (amortised invariance):
/// the gradient in the invariance vector v, in every hypernetwork weight and in the rest of
/// the encoder, with one v per row and one v shared by all rows.
final class ConditionedConv4Tests: XCTestCase {
  /// L = Σ y·r for FiLM, in Double.
  func testFiLMGradients() throws {
    for rows in [3, 1] {
      let x = TestData.tensor(Shape(3, 4, 2, 3), TestData.uniform(72, seed: 1))
      let m = TestData.tensor(Shape(rows, 8), TestData.uniform(rows * 8, seed: 2, -0.5, 0.5))
      let film = FiLM(name: "film", channels: 4)
      let y0 = try film.forward(x, modulation: m)
      let r = TestData.uniform(y0.count, seed: 3)
      func loss() throws -> Double {
        let y = try film.forward(x, modulation: m)
        return (0..<y.count).reduce(0.0) { $0 + Double(y.data[$1]) * Double(r[$1]) }
      }
      _ = try film.forward(x, modulation: m)
      let (dx, dm) = try film.backward(TestData.tensor(y0.shape, r))
      let dxA = dx.toArray(), dmA = dm.toArray()
      XCTAssertEqual(dm.shape.n, rows)
      assertClose(dxA, try numeric(x.data, x.count, eps: 1e-2, loss), tolerance: 1e-3, "FiLM dx, rows \(rows)")
      assertClose(dmA, try numeric(m.data, m.count, eps: 1e-2, loss), tolerance: 1e-3, "FiLM dm, rows \(rows)")
    }
  }

  /// Central differences of `loss` in each of `count` values at `p`.
  func numeric(_ p: UnsafeMutablePointer<Float>, _ count: Int, eps: Float, _ loss: () throws -> Double) throws -> [Float] {
    var g = [Float](repeating: 0, count: count)
    for i in 0..<count {
      let v = p[i]
      p[i] = v + eps
      let up = Double(p[i])
      let lp = try loss()
      p[i] = v - eps
      let down = Double(p[i])
      let lm = try loss()
      p[i] = v
      g[i] = Float((lp - lm) / (up - down))
    }
    return g
  }

  /// Central differences at step 1e-3; an entry more than 2e-2 of the largest magnitude
  /// away from `analytic` is measured again at 1e-4 and that value kept. The large step
  /// crosses a ReLU or max-pool kink now and then (measured: 5 of encoder.4.weight's 144
  /// entries); the small one carries float rounding of L (its worst measured: 2.1e-2 on a
  /// hypernetwork weight). A wrong gradient is wrong at both steps; at most 5 % of the entries
  /// may need the second step.
  func twoStepNumeric(
    _ analytic: [Float], _ p: UnsafeMutablePointer<Float>, _ count: Int, _ loss: () throws -> Double, what: String
  ) throws -> [Float] {
    var g = try numeric(p, count, eps: 1e-3, loss)
    let scale = max(g.map(abs).max()!, 1e-6)
    var retried = 0
    for i in 0..<count where abs(g[i] - analytic[i]) > 2e-2 * scale {
      g[i] = try numeric(p + i, 1, eps: 1e-4, loss)[0]
      retried += 1
    }
    XCTAssertLessThanOrEqual(retried, max(1, count / 20), "\(what): \(retried) of \(count) entries needed the small step")
    return g
  }

  /// A small conditioned conv4 (width 4, 16×16 input, k = 2, hidden 5) with training-mode BN.
  func makeEncoder(seed: UInt64) -> (ConditionedConv4, ParameterArena) {
    let arena = ParameterArena()
    let enc = ConditionedConv4(
      arena: arena, prefix: "encoder", inChannels: 1, width: 4, inputSize: 16, invarianceDim: 2, hidden: 5,
      makeNorm: { name, c in BatchNorm(arena: arena, name: name, channels: c) })
    arena.allocate(seed: seed)
    return (enc, arena)
  }

  /// dL/dv and dL/dθ (every range: convolutions, BN, the hypernetworks) against central
  /// differences, with v per row (rows = N) and shared (rows = 1). ReLU and max-pool kinks
  /// make a large step wrong, so the step is small (1e-3) and the tolerance 2e-2 (float rounding
  /// of L over the step; the BasicBlock check's reasoning).
  func testGradientInInvarianceAndWeights() throws {
    let n = 4
    for rows in [n, 1] {
      let (enc, arena) = makeEncoder(seed: 7)
      XCTAssertEqual(enc.featureDim, 4)
      XCTAssertNotNil(arena.parameter(named: "encoder.hyper0.0.weight"))
      XCTAssertNotNil(arena.parameter(named: "encoder.hyper3.2.bias"))
      let x = TestData.tensor(Shape(n, 1, 16, 16), TestData.uniform(n * 256, seed: 8))
      let v = TestData.tensor(Shape(rows, 2), TestData.uniform(rows * 2, seed: 9, 0, 1))
      let r = TestData.uniform(n * 4, seed: 10)
      func loss() throws -> Double {
        enc.setInvariance(v.data, rows: rows)
        let y = try enc.forward(x, training: true)
        return (0..<y.count).reduce(0.0) { $0 + Double(y.data[$1]) * Double(r[$1]) }
      }
      arena.zeroGrads()
      _ = try loss()
      _ = try enc.backward(TestData.tensor(Shape(n, 4, 1, 1), r))
      let dv = enc.invarianceGradient!.toArray()
      XCTAssertEqual(dv.count, rows * 2)
      XCTAssertGreaterThan(dv.map(abs).max()!, 1e-4, "v reaches the output")
      let analytic = arena.parameterRanges.map { arena.gradient(of: $0) }
      assertClose(dv, try twoStepNumeric(dv, v.data, v.count, loss, what: "dv"), tolerance: 2e-2, "dv, rows \(rows)")
      for (range, a) in zip(arena.parameterRanges, analytic) {
        // A conv bias feeding training-mode BN has a true gradient of 0: both sides noise.
        if ["encoder.0.bias", "encoder.4.bias", "encoder.8.bias", "encoder.12.bias"].contains(range.name)
        {
          XCTAssertLessThan(a.map(abs).max()!, 1e-4, "\(range.name) feeds a BN")
          continue
        }
        let p = arena.params + range.offset
        let num = try twoStepNumeric(a, p, range.count, loss, what: "d\(range.name), rows \(rows)")
        assertClose(a, num, tolerance: 2e-2, "d\(range.name), rows \(rows)")
      }
    }
  }

  /// One shared v gives the same features as that v repeated per row, and another v other
  /// features (the conditioning is not a no-op).
  func testSharedVectorEqualsRepeatedRowsAndVMatters() throws {
    let (enc, _) = makeEncoder(seed: 3)
    let x = TestData.tensor(Shape(3, 1, 16, 16), TestData.uniform(3 * 256, seed: 4))
    enc.setInvariance([0.2, 0.9])
    let shared = try enc.forward(x, training: false).toArray()
    let repeated: [Float] = [0.2, 0.9, 0.2, 0.9, 0.2, 0.9]
    repeated.withUnsafeBufferPointer { enc.setInvariance($0.baseAddress!, rows: 3) }
    XCTAssertEqual(try enc.forward(x, training: false).toArray(), shared)
    enc.setInvariance([1, 0])
    let other = try enc.forward(x, training: false).toArray()
    XCTAssertGreaterThan(zip(other, shared).map { abs($0 - $1) }.max()!, 1e-3)
    // A mismatched row count is an error naming the encoder.
    let two: [Float] = [0, 0, 1, 1]
    two.withUnsafeBufferPointer { enc.setInvariance($0.baseAddress!, rows: 2) }
    XCTAssertThrowsError(try enc.forward(x, training: false)) {
      XCTAssertTrue("\($0)".contains("2 invariance vectors for 3 input rows"), "\($0)")
    }
  }
}
