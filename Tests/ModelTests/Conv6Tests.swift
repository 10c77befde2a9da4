import Foundation
import Model
import XCTest

/// `conv6` and its mirrored decoder (issue 15): shapes and PyTorch names, and the gradient of
/// the whole autoencoder along random directions against finite differences.
final class Conv6Tests: XCTestCase {
  func testShapesAndNames() throws {
    let arena = ParameterArena()
    let enc = Conv6(arena: arena, prefix: "encoder", inChannels: 1, inputSize: 28)
    let dec = Conv6Decoder(arena: arena, prefix: "decoder", mirroring: enc, outputSize: 28)
    arena.allocate(seed: 1)
    XCTAssertEqual(
      arena.parameterRanges.map(\.name).filter { $0.hasSuffix(".weight") },
      ["encoder.0.weight", "encoder.2.weight", "encoder.4.weight", "encoder.6.weight", "encoder.8.weight",
       "decoder.0.weight", "decoder.2.weight", "decoder.3.weight", "decoder.5.weight", "decoder.6.weight"])
    XCTAssertEqual(arena.parameter(named: "decoder.0.weight")?.shape, [512, 64, 5, 5], "3 → 7 needs kernel 5")
    XCTAssertEqual(arena.parameter(named: "decoder.6.weight")?.shape, [32, 1, 4, 4])
    let x = TestData.tensor(Shape(2, 1, 28, 28), TestData.uniform(2 * 784, seed: 2))
    let h = try enc.forward(x, training: true)
    XCTAssertEqual(h.shape, Shape(2, 4608))
    XCTAssertEqual(enc.prePoolFeatures?.shape, Shape(2, 512, 7, 7))
    XCTAssertEqual(try dec.forward(h, training: true).shape, Shape(2, 1, 28, 28))
    // 32×32 RGB: 16, 8, 4 and back.
    let a2 = ParameterArena()
    let e2 = Conv6(arena: a2, prefix: "encoder", inChannels: 3, inputSize: 32)
    let d2 = Conv6Decoder(arena: a2, prefix: "decoder", mirroring: e2, outputSize: 32)
    a2.allocate(seed: 1)
    let y2 = try d2.forward(try e2.forward(TestData.tensor(Shape(1, 3, 32, 32), TestData.uniform(3072, seed: 3)), training: true), training: true)
    XCTAssertEqual(y2.shape, Shape(1, 3, 32, 32))
  }

  /// L = Σ decoder(encoder(x))·r: the analytic gradient projected on random directions of
  /// every parameter and of the input equals the central difference along them.
  func testDirectionalGradientsOfTheAutoencoder() throws {
    let arena = ParameterArena()
    let enc = Conv6(arena: arena, prefix: "e", inChannels: 1, inputSize: 8)
    let dec = Conv6Decoder(arena: arena, prefix: "d", mirroring: enc, outputSize: 8)
    arena.allocate(seed: 4)
    // Small weights keep Hardtanh off its kinks along the perturbation.
    for i in 0..<arena.parameterCount { arena.params[i] *= 0.5 }
    let shape = Shape(2, 1, 8, 8)
    var xs = TestData.uniform(shape.count, seed: 5, -0.5, 0.5)
    let r = TestData.uniform(shape.count, seed: 6)
    func loss() throws -> Double {
      let y = try dec.forward(try enc.forward(TestData.tensor(shape, xs), training: true), training: true)
      return (0..<y.count).reduce(0.0) { $0 + Double(y.data[$1]) * Double(r[$1]) }
    }
    arena.zeroGrads()
    _ = try loss()
    let dx = try enc.backward(try dec.backward(TestData.tensor(shape, r))).toArray()
    let grads = Array(UnsafeBufferPointer(start: arena.grads, count: arena.parameterCount))
    for trial in 0..<3 {
      let v = TestData.uniform(arena.parameterCount, seed: 100 + UInt64(trial))
      let u = TestData.uniform(shape.count, seed: 200 + UInt64(trial))
      let eps: Float = 1e-3
      let theta = Array(UnsafeBufferPointer(start: arena.params, count: arena.parameterCount))
      let x0 = xs
      func set(_ s: Float) {
        for i in 0..<theta.count { arena.params[i] = theta[i] + s * v[i] }
        for i in 0..<x0.count { xs[i] = x0[i] + s * u[i] }
      }
      set(eps)
      let up = try loss()
      set(-eps)
      let down = try loss()
      set(0)
      let numeric = (up - down) / Double(2 * eps)
      let analytic = zip(grads, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        + zip(dx, u).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
      XCTAssertEqual(analytic, numeric, accuracy: 2e-3 * max(1, abs(numeric)), "direction \(trial)")
    }
  }
}
