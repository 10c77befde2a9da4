import Foundation
import Model
import XCTest

/// `ConvTranspose2d` (issue 15) against PyTorch, finite differences and its naive twin.
final class ConvTranspose2dTests: XCTestCase {
  func testMatchesPyTorch() throws {
    let (t, meta) = try SafeTensors.read(Fixtures.directory.appendingPathComponent("conv_transpose2d_k4_s2.safetensors"))
    XCTAssertEqual(meta["stride"], "2")
    XCTAssertEqual(meta["padding"], "1")
    let w = t["weight"]!
    let arena = ParameterArena()
    let layer = ConvTranspose2d(
      arena: arena, name: "up", inChannels: w.shape[0], outChannels: w.shape[1], kernel: w.shape[2], stride: 2,
      padding: 1, bias: false)
    arena.allocate(seed: 0)
    arena.set(arena.parameter(named: "up.weight")!, w.values)
    let xs = t["x"]!.shape
    let y = try layer.forward(TestData.tensor(Shape(xs[0], xs[1], xs[2], xs[3]), t["x"]!.values), training: true)
    XCTAssertEqual(y.shape, Shape(2, 3, 10, 10))
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-5, "y")
    arena.zeroGrads()
    let dx = try layer.backward(TestData.tensor(y.shape, t["dy"]!.values))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-5, "dx")
    assertClose(arena.gradient(of: arena.parameter(named: "up.weight")!), t["dweight"]!.values, tolerance: 1e-5, "dweight")
  }

  func testFiniteDifferencesWithBias() throws {
    for (k, s, p) in [(4, 2, 1), (3, 1, 1), (2, 2, 0)] {
      let arena = ParameterArena()
      let layer = ConvTranspose2d(arena: arena, name: "up", inChannels: 2, outChannels: 3, kernel: k, stride: s, padding: p)
      arena.allocate(seed: 7)
      try checkGradients(layer, arena: arena, input: Shape(2, 2, 3, 4), seed: UInt64(k * 10 + s))
    }
  }

  func testGemmPathEqualsTheLoops() throws {
    let arena = ParameterArena()
    let layer = ConvTranspose2d(arena: arena, name: "up", inChannels: 3, outChannels: 5, kernel: 4, stride: 2, padding: 1)
    arena.allocate(seed: 3)
    let shape = Shape(2, 3, 6, 7)
    let x = TestData.uniform(shape.count, seed: 1)
    let y = try layer.forward(TestData.tensor(shape, x), training: false)
    let ref = ConvTranspose2d.reference(
      x: x, shape: shape, weight: arena.gradientFree("up.weight"), bias: arena.gradientFree("up.bias"), outChannels: 5,
      kernel: 4, stride: 2, padding: 1)
    XCTAssertEqual(y.shape, ref.shape)
    assertClose(y.toArray(), ref.y, tolerance: 1e-6, "y")
    XCTAssertThrowsError(try layer.forward(TestData.tensor(Shape(1, 2, 3, 3), [Float](repeating: 0, count: 18)), training: false))
  }
}

extension ParameterArena {
  /// The current values of the parameter `name`.
  fileprivate func gradientFree(_ name: String) -> [Float] {
    let r = parameter(named: name)!
    return Array(UnsafeBufferPointer(start: params + r.offset, count: r.count))
  }
}
