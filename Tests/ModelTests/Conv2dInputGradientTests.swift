import Model
import XCTest

final class Conv2dInputGradientTests: XCTestCase {
  /// Skipping dX leaves dW and dB unchanged and returns zeros.
  func testSkippingInputGradientKeepsParameterGradients() throws {
    var grads: [[Float]] = []
    for computes in [true, false] {
      let arena = ParameterArena()
      let conv = Conv2d(
        arena: arena, name: "c", inChannels: 2, outChannels: 3, kernel: 3, padding: 1, bias: true)
      conv.computesInputGradient = computes
      arena.allocate(seed: 5)
      let xs = Shape(2, 2, 6, 6)
      let y = try conv.forward(TestData.tensor(xs, TestData.uniform(xs.count, seed: 6)), training: true)
      let dx = try conv.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 7)))
      if !computes { XCTAssertEqual(dx.toArray().map(abs).max(), 0) }
      grads.append(arena.gradient(of: arena.parameter(named: "c.weight")!) + arena.gradient(of: arena.parameter(named: "c.bias")!))
    }
    XCTAssertEqual(grads[0], grads[1])
  }
}
