import Model
import XCTest

/// Helpers shared by the layer tests.
enum TestData {
  /// Uniform values in [lo, hi) from a seeded generator.
  static func uniform(_ count: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in lo + (hi - lo) * rng.nextUnitFloat() }
  }

  /// Every buffer `tensor` made, kept alive for the whole test run: a `Tensor` is only a
  /// pointer, and Swift may free a local `Storage` right after its last use.
  nonisolated(unsafe) private static var retained: [Storage] = []

  /// A layer-independent buffer holding `values` with `shape`.
  static func tensor(_ shape: Shape, _ values: [Float]) -> Tensor {
    precondition(values.count == shape.count)
    let storage = Storage()
    retained.append(storage)
    let t = storage.tensor(shape)
    values.withUnsafeBufferPointer { t.data.update(from: $0.baseAddress!, count: values.count) }
    return t
  }
}

/// Fails unless `max|actual − expected| ≤ tolerance · max(max|expected|, floor)`: a relative
/// error measured against the largest expected magnitude.
func assertClose(
  _ actual: [Float], _ expected: [Float], tolerance: Double, floor: Double = 1e-6,
  _ what: String, file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
  guard actual.count == expected.count, !expected.isEmpty else { return }
  var maxDiff = 0.0
  var maxRef = 0.0
  var worst = 0
  for i in 0..<actual.count {
    let d = abs(Double(actual[i]) - Double(expected[i]))
    if !(d <= maxDiff) { maxDiff = d; worst = i }
    maxRef = max(maxRef, abs(Double(expected[i])))
  }
  let rel = maxDiff / max(maxRef, floor)
  XCTAssertTrue(
    rel <= tolerance,
    "\(what): relative error \(rel) > \(tolerance) (at \(worst): \(actual[worst]) vs \(expected[worst]))",
    file: file, line: line)
}

/// Checks a layer's backward against central finite differences of the scalar loss
/// `L = Σ y · r` (r random, fixed), accumulated in Double: `dx` and the gradient of every
/// parameter registered in `arena`. Perturbs every element, so keep the layer small.
///
/// - Parameters:
///   - eps: the perturbation; layers linear in the perturbed value are exact for any step,
///     so a larger step only shrinks float rounding in L.
///   - tolerance: the allowed `assertClose` relative error.
func checkGradients(
  _ layer: Layer, arena: ParameterArena, input shape: Shape, seed: UInt64,
  inputValues: [Float]? = nil, eps: Float = 1e-2, tolerance: Double = 2e-3,
  file: StaticString = #filePath, line: UInt = #line
) throws {
  let x = TestData.tensor(shape, inputValues ?? TestData.uniform(shape.count, seed: seed))
  let y0 = try layer.forward(x, training: true)
  let r = TestData.uniform(y0.count, seed: seed &+ 1)
  let yShape = y0.shape

  func loss() throws -> Double {
    let y = try layer.forward(x, training: true)
    var acc = 0.0
    for i in 0..<y.count { acc += Double(y.data[i]) * Double(r[i]) }
    return acc
  }

  // Analytic gradients.
  arena.zeroGrads()
  _ = try layer.forward(x, training: true)
  let dx = try layer.backward(TestData.tensor(yShape, r)).toArray()
  let analytic = arena.parameterRanges.map { arena.gradient(of: $0) }

  func numeric(_ p: UnsafeMutablePointer<Float>, _ count: Int) throws -> [Float] {
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

  assertClose(
    dx, try numeric(x.data, x.count), tolerance: tolerance, "dx", file: file, line: line)
  for (range, a) in zip(arena.parameterRanges, analytic) {
    assertClose(
      a, try numeric(arena.params + range.offset, range.count), tolerance: tolerance,
      "d\(range.name)", file: file, line: line)
  }
}
