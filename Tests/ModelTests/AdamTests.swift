import Foundation
import XCTest

@testable import Model

/// Adam against a Double transcription of PyTorch's `torch.optim.Adam` (L2 decay in the
/// gradient, bias corrections per tensor), and its range-restricted step.
final class AdamTests: XCTestCase {
  /// PyTorch's rule in Double for one tensor: returns w after `grads.count` steps.
  func reference(w0: [Double], grads: [[Double]], lr: Double, b1: Double, b2: Double, eps: Double, wd: Double) -> [Double] {
    var w = w0
    var m = [Double](repeating: 0, count: w.count)
    var v = m
    for (t, g0) in grads.enumerated() {
      let step = Double(t + 1)
      for i in w.indices {
        let g = g0[i] + wd * w[i]
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        let mHat = m[i] / (1 - pow(b1, step))
        let vHat = v[i] / (1 - pow(b2, step))
        w[i] -= lr * mHat / (vHat.squareRoot() + eps)
      }
    }
    return w
  }

  func arena() -> ParameterArena {
    let a = ParameterArena()
    _ = a.register("w", shape: [3, 4], kind: .weight, initializer: .zeros)
    _ = a.register("b", shape: [5], kind: .biasOrNorm, initializer: .zeros)
    a.allocate(seed: 0)
    return a
  }

  func testAdamMatchesPyTorchsRule() throws {
    let a = arena()
    let w = a.parameter(named: "w")!, b = a.parameter(named: "b")!
    var rng = SplitMix64(seed: 7)
    func draw(_ n: Int) -> [Float] { (0..<n).map { _ in rng.nextUnitFloat() * 2 - 1 } }
    let w0 = draw(12), b0 = draw(5)
    a.set(w, w0)
    a.set(b, b0)
    let opt = Adam(parameterCount: a.parameterCount, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.1)
    var gw: [[Float]] = []
    var gb: [[Float]] = []
    for _ in 0..<4 {
      gw.append(draw(12).map { $0 * 3 })
      gb.append(draw(5))
      gw.last!.withUnsafeBufferPointer { (a.grads + w.offset).update(from: $0.baseAddress!, count: 12) }
      gb.last!.withUnsafeBufferPointer { (a.grads + b.offset).update(from: $0.baseAddress!, count: 5) }
      try opt.step(a, lr: 0.01)
    }
    let rw = reference(
      w0: w0.map(Double.init), grads: gw.map { $0.map(Double.init) }, lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1)
    let rb = reference(
      w0: b0.map(Double.init), grads: gb.map { $0.map(Double.init) }, lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1)
    for (x, y) in zip(a.values(of: w), rw) { XCTAssertEqual(Double(x), y, accuracy: 1e-6) }
    for (x, y) in zip(a.values(of: b), rb) { XCTAssertEqual(Double(x), y, accuracy: 1e-6) }
    // Each step moved every weight by about lr (|m̂/√v̂| ≈ 1 at first): the test can fail.
    XCTAssertGreaterThan(zip(a.values(of: w), w0).map { abs($0 - $1) }.min()!, 1e-3)
  }

  /// A range left out of `ranges` keeps its values and state bit for bit; a range stepped
  /// first at a later call starts its bias correction at t = 1 (its first move is ≈ lr).
  func testRangesOutsideTheStepAreUntouched() throws {
    let a = arena()
    let w = a.parameter(named: "w")!, b = a.parameter(named: "b")!
    a.set(w, (0..<12).map { Float($0) / 10 })
    a.set(b, (0..<5).map { Float($0) / 10 })
    for i in 0..<a.parameterCount { a.grads[i] = 0.5 }
    let opt = Adam(parameterCount: a.parameterCount, weightDecay: 0.01)
    let before = a.values(of: b)
    for _ in 0..<3 { try opt.step(a, lr: 0.1, ranges: [w]) }
    XCTAssertEqual(a.values(of: b), before)
    for name in opt.stateNames {
      let s = opt.stateBuffer(named: name)! + b.offset
      XCTAssertTrue((0..<5).allSatisfy { s[$0] == 0 }, "\(name) of the untouched range")
    }
    try opt.step(a, lr: 0.1, ranges: [b])
    let expected = reference(
      w0: before.map(Double.init), grads: [[Double](repeating: 0.5, count: 5)], lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8,
      wd: 0.01)
    for (x, y) in zip(a.values(of: b), expected) { XCTAssertEqual(Double(x), y, accuracy: 1e-6) }
    XCTAssertEqual(opt.stateBuffer(named: "step")![b.offset], 1)
    XCTAssertEqual(opt.stateBuffer(named: "step")![w.offset], 3)
  }
}
