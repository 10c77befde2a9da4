import Foundation
import Model
import XCTest

/// Numerical helpers for the BatchNorm, loss and optimizer tests.
enum NumCheck {
  /// Fails unless `|a − e| ≤ rtol·|e| + atol·max|e|` for every element (so `atol` is relative
  /// to the largest expected magnitude, which keeps tiny entries from dominating).
  static func assertClose(
    _ actual: [Float], _ expected: [Float], rtol: Float = 1e-4, atol: Float = 1e-5,
    _ what: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
    guard actual.count == expected.count else { return }
    let scale = expected.map { abs($0) }.max() ?? 0
    for i in 0..<actual.count {
      let err = abs(actual[i] - expected[i])
      let allowed = rtol * abs(expected[i]) + atol * scale
      guard err.isFinite, err <= allowed else {
        XCTFail(
          "\(what)[\(i)]: got \(actual[i]), expected \(expected[i]) (|diff| \(err) > \(allowed))",
          file: file, line: line)
        return
      }
    }
  }

  /// The largest `|a − e|/max|e|` over all elements.
  static func maxRelative(_ a: [Float], _ e: [Float]) -> Float {
    precondition(a.count == e.count)
    let scale = max(e.map { abs($0) }.max() ?? 0, 1e-30)
    var m: Float = 0
    for i in 0..<a.count { m = max(m, abs(a[i] - e[i]) / scale) }
    return m
  }

  /// Deterministic pseudo-random values in [-scale, scale) (plus `offset`).
  static func random(_ count: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale + offset }
  }

  /// Central differences of `f` with respect to every element of `x` (perturbed in place and
  /// restored): `(f(x + h·e_i) − f(x − h·e_i)) / 2h`, with `f` returning a Double.
  static func centralDifferences(
    _ x: UnsafeMutablePointer<Float>, count: Int, h: Float, _ f: () throws -> Double
  ) rethrows -> [Float] {
    var out = [Float](repeating: 0, count: count)
    for i in 0..<count {
      let keep = x[i]
      x[i] = keep + h
      let plus = try f()
      x[i] = keep - h
      let minus = try f()
      x[i] = keep
      out[i] = Float((plus - minus) / (2 * Double(h)))
    }
    return out
  }
}

/// Owns the memory behind test tensors (a `Tensor` is only a view) until the pool goes away.
/// Keep the pool in a stored property of the test case, so the memory outlives every use
/// (a local owner could be released after its last mention, before the view is used).
final class TensorPool: @unchecked Sendable {
  private var blocks: [UnsafeMutablePointer<Float>] = []
  private let lock = NSLock()

  deinit { for b in blocks { b.deallocate() } }

  /// A tensor holding a copy of `values`.
  func tensor(_ values: [Float], _ shape: Shape) -> Tensor {
    precondition(values.count == shape.count, "\(values.count) values for \(shape)")
    let p = UnsafeMutablePointer<Float>.allocate(capacity: max(values.count, 1))
    p.initialize(repeating: 0, count: max(values.count, 1))
    values.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: values.count) }
    lock.lock()
    blocks.append(p)
    lock.unlock()
    return Tensor(p, shape)
  }
}
