import Model
import XCTest

/// Finite-difference checks of every layer's backward (see `checkGradients`): dx and every
/// parameter gradient within 2e-3 relative error for layers that are piecewise linear with
/// no kink within `eps` of the inputs. Inside a BasicBlock the hidden ReLUs may sit near their
/// kink, so it takes a small step (1e-4, where a step of 1e-3 measurably crosses kinks) and
/// 1e-2, the float rounding of L divided by that step.
final class LayerGradientTests: XCTestCase {
  func testConv2dGradients() throws {
    // (kernel, stride, padding, bias, input size)
    let cases: [(Int, Int, Int, Bool, Int)] = [
      (3, 1, 1, true, 6), (3, 2, 1, false, 6), (1, 2, 0, false, 6), (3, 2, 0, true, 7),
      (2, 1, 0, true, 5),
    ]
    for (i, (k, s, p, bias, size)) in cases.enumerated() {
      let arena = ParameterArena()
      let conv = Conv2d(
        arena: arena, name: "c", inChannels: 3, outChannels: 4, kernel: k, stride: s,
        padding: p, bias: bias)
      arena.allocate(seed: UInt64(10 + i))
      XCTAssertEqual(arena.parameterRanges.count, bias ? 2 : 1)
      try checkGradients(conv, arena: arena, input: Shape(2, 3, size, size), seed: UInt64(i))
    }
  }

  func testConv2dChunkedGradients() throws {
    let arena = ParameterArena()
    let conv = Conv2d(
      arena: arena, name: "c", inChannels: 2, outChannels: 3, kernel: 3, stride: 1, padding: 1,
      bias: true)
    conv.columnBudget = 2 * 18 * 25  // two samples per chunk, three samples
    // Chunks exist only on the im2col + GEMM path (the implicit GEMMs take the whole batch).
    conv.usesImplicitGemm = false
    arena.allocate(seed: 3)
    try checkGradients(conv, arena: arena, input: Shape(3, 2, 5, 5), seed: 4)
  }

  func testLinearGradients() throws {
    let arena = ParameterArena()
    let lin = Linear(arena: arena, name: "fc", inFeatures: 8, outFeatures: 5)
    arena.allocate(seed: 1)
    // A [N, C, H, W] input whose perSample is inFeatures.
    try checkGradients(lin, arena: arena, input: Shape(3, 2, 2, 2), seed: 2)
    let noBias = ParameterArena()
    let lin2 = Linear(arena: noBias, name: "fc", inFeatures: 6, outFeatures: 4, bias: false)
    noBias.allocate(seed: 1)
    XCTAssertNil(noBias.parameter(named: "fc.bias"))
    try checkGradients(lin2, arena: noBias, input: Shape(5, 6), seed: 3)
  }

  /// Values at least 0.1 away from zero, so ±eps never crosses the kink.
  private func awayFromZero(_ count: Int, seed: UInt64) -> [Float] {
    TestData.uniform(count, seed: seed).map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
  }

  func testReLUGradients() throws {
    let arena = ParameterArena()
    arena.allocate(seed: 0)
    let s = Shape(2, 3, 4, 4)
    try checkGradients(
      ReLU(), arena: arena, input: s, seed: 5, inputValues: awayFromZero(s.count, seed: 5))
  }

  func testHardtanhGradients() throws {
    let arena = ParameterArena()
    arena.allocate(seed: 0)
    let s = Shape(2, 3, 4, 4)
    // Values in ±[0, 0.8] ∪ ±[1.2, 2]: away from both corners.
    let v = TestData.uniform(s.count, seed: 6, -1, 1).map { u -> Float in
      let a = abs(u)
      let m: Float = a < 0.5 ? a * 1.6 : 1.2 + (a - 0.5) * 1.6
      return u < 0 ? -m : m
    }
    try checkGradients(Hardtanh(min: -1, max: 1), arena: arena, input: s, seed: 6, inputValues: v)
  }

  func testMaxPool2dGradients() throws {
    let arena = ParameterArena()
    arena.allocate(seed: 0)
    // Distinct values 0.05 apart, so ±eps (0.01) never changes a window's maximum; 7 → 3.
    let s = Shape(2, 2, 7, 7)
    var rng = SplitMix64(seed: 7)
    let v = (0..<s.count).map { Float($0) * 0.05 - 2 }.shuffled(using: &rng)
    let pool = MaxPool2d(kernel: 2, stride: 2)
    try checkGradients(pool, arena: arena, input: s, seed: 7, inputValues: v)
    let y = try pool.forward(TestData.tensor(s, v), training: true)
    XCTAssertEqual(y.shape, Shape(2, 2, 3, 3))
  }

  func testGlobalAvgPoolGradients() throws {
    let arena = ParameterArena()
    arena.allocate(seed: 0)
    try checkGradients(GlobalAvgPool(), arena: arena, input: Shape(2, 3, 3, 5), seed: 8)
  }

  func testFlattenGradientsAndShapes() throws {
    let arena = ParameterArena()
    let net = Sequential([
      Flatten(), Linear(arena: arena, name: "fc", inFeatures: 12, outFeatures: 3),
    ])
    arena.allocate(seed: 9)
    try checkGradients(net, arena: arena, input: Shape(2, 3, 2, 2), seed: 9)
    let f = Flatten()
    let x = TestData.tensor(Shape(2, 3, 2, 2), TestData.uniform(24, seed: 1))
    let y = try f.forward(x, training: true)
    XCTAssertEqual(y.shape, Shape(2, 12, 1, 1))
    XCTAssertEqual(y.toArray(), x.toArray())
    XCTAssertEqual(try f.backward(y).shape, Shape(2, 3, 2, 2))
  }

  func testBasicBlockGradients() throws {
    // Projection shortcut (stride 2, 3 → 4) and identity shortcut (4 → 4).
    for (cin, cout, stride, seed) in [(3, 4, 2, UInt64(11)), (4, 4, 1, UInt64(12))] {
      let arena = ParameterArena()
      let block = BasicBlock(
        arena: arena, prefix: "b", inChannels: cin, outChannels: cout, stride: stride,
        makeNorm: { _, _ in IdentityNorm() })
      arena.allocate(seed: seed)
      XCTAssertEqual(arena.parameter(named: "b.downsample.0.weight") != nil, stride != 1)
      try checkGradients(
        block, arena: arena, input: Shape(2, cin, 6, 6), seed: seed, eps: 1e-4, tolerance: 1e-2)
    }
  }

  /// Backward adds into the arena's gradients rather than overwriting them.
  func testParameterGradientsAccumulate() throws {
    let arena = ParameterArena()
    let net = Sequential([
      Conv2d(arena: arena, name: "c", inChannels: 2, outChannels: 3, kernel: 3, padding: 1, bias: true),
      Flatten(),
      Linear(arena: arena, name: "fc", inFeatures: 3 * 16, outFeatures: 2),
    ])
    arena.allocate(seed: 1)
    let x = TestData.tensor(Shape(2, 2, 4, 4), TestData.uniform(64, seed: 2))
    let dy = TestData.tensor(Shape(2, 2), TestData.uniform(4, seed: 3))
    arena.zeroGrads()
    _ = try net.forward(x, training: true)
    _ = try net.backward(dy)
    let once = (0..<arena.parameterCount).map { arena.grads[$0] }
    _ = try net.forward(x, training: true)
    _ = try net.backward(dy)
    let twice = (0..<arena.parameterCount).map { arena.grads[$0] }
    assertClose(twice, once.map { 2 * $0 }, tolerance: 1e-6, "accumulated gradients")
    XCTAssertGreaterThan(once.map(abs).max()!, 0)
  }
}
