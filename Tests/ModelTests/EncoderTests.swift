import Foundation
import Model
import XCTest

/// Encoders and heads: output shapes, state-dict names, and PyTorch agreement of a
/// BasicBlock and of the conv4 + projection head forward pass (with the real BatchNorm).
final class EncoderTests: XCTestCase {
  private let identity: NormFactory = { _, _ in IdentityNorm() }

  private func bn(_ arena: ParameterArena) -> NormFactory {
    { name, channels in BatchNorm(arena: arena, name: name, channels: channels) }
  }

  func testConv4Shapes() throws {
    let arena = ParameterArena()
    let enc = try Conv4(arena: arena, prefix: "encoder", makeNorm: identity)
    arena.allocate(seed: 1)
    XCTAssertEqual(enc.featureDim, 64)
    XCTAssertEqual(enc.prePoolDim, 576)
    XCTAssertNil(enc.prePoolFeatures)
    let xs = Shape(3, 1, 28, 28)
    let y = try enc.forward(TestData.tensor(xs, TestData.uniform(xs.count, seed: 2)), training: true)
    XCTAssertEqual(y.shape, Shape(3, 64, 1, 1))
    XCTAssertEqual(enc.prePoolFeatures?.shape, Shape(3, 64, 3, 3))
    XCTAssertEqual(enc.prePoolFeatures?.shape.perSample, enc.prePoolDim)
    let dx = try enc.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 3)))
    XCTAssertEqual(dx.shape, xs)
    XCTAssertGreaterThan(dx.toArray().map(abs).max()!, 0)
  }

  func testResNet18Shapes() throws {
    let arena = ParameterArena()
    let enc = try ResNet18(arena: arena, prefix: "encoder", makeNorm: identity)
    arena.allocate(seed: 1)
    XCTAssertEqual(enc.featureDim, 512)
    XCTAssertEqual(enc.prePoolDim, 512 * 4 * 4)
    let xs = Shape(2, 1, 28, 28)
    let y = try enc.forward(TestData.tensor(xs, TestData.uniform(xs.count, seed: 2)), training: true)
    XCTAssertEqual(y.shape, Shape(2, 512, 1, 1))
    XCTAssertEqual(enc.prePoolFeatures?.shape, Shape(2, 512, 4, 4))
    let dx = try enc.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 3)))
    XCTAssertEqual(dx.shape, xs)
  }

  /// Log-mel inputs are not square: 1 × 16 mels × 33 frames leaves a 2 × 5 pre-pool map.
  func testResNet18NonSquarePrePoolDim() throws {
    let arena = ParameterArena()
    let enc = try ResNet18(arena: arena, prefix: "encoder", inputSize: 16, inputWidth: 33, makeNorm: identity)
    arena.allocate(seed: 1)
    XCTAssertEqual(enc.prePoolDim, 512 * 2 * 5)
    let xs = Shape(2, 1, 16, 33)
    let y = try enc.forward(TestData.tensor(xs, TestData.uniform(xs.count, seed: 2)), training: true)
    XCTAssertEqual(y.shape, Shape(2, 512, 1, 1))
    XCTAssertEqual(enc.prePoolFeatures?.shape.perSample, enc.prePoolDim)
  }

  func testResNet18Names() throws {
    let arena = ParameterArena()
    _ = try ResNet18(arena: arena, prefix: "encoder", inChannels: 3, makeNorm: bn(arena))
    func shape(_ n: String) -> [Int]? { arena.parameter(named: "encoder.\(n)")?.shape }
    XCTAssertEqual(shape("conv1.weight"), [64, 3, 3, 3])
    XCTAssertEqual(shape("bn1.weight"), [64])
    XCTAssertEqual(shape("layer1.0.conv1.weight"), [64, 64, 3, 3])
    XCTAssertEqual(shape("layer1.1.bn2.bias"), [64])
    XCTAssertNil(shape("layer1.0.downsample.0.weight"))
    XCTAssertEqual(shape("layer2.0.conv1.weight"), [128, 64, 3, 3])
    XCTAssertEqual(shape("layer2.0.downsample.0.weight"), [128, 64, 1, 1])
    XCTAssertEqual(shape("layer2.0.downsample.1.weight"), [128])
    XCTAssertNil(shape("layer2.1.downsample.0.weight"))
    XCTAssertEqual(shape("layer4.1.conv2.weight"), [512, 512, 3, 3])
    XCTAssertNil(shape("conv1.bias"))
    XCTAssertNotNil(arena.buffer(named: "encoder.layer3.0.downsample.1.running_var"))
    // The CIFAR ResNet-18 (3 input channels) has 11,173,962 parameters with its 512→10
    // classifier (5,130 of them).
    XCTAssertEqual(arena.parameterCount, 11_173_962 - 5_130)
  }

  /// conv4 + head build exactly PyTorch's state-dict names and shapes (`param.*` of the
  /// SimCLR step fixture: `0.*` the encoder, `1.*` the head).
  func testConv4AndHeadNamesMatchPyTorch() throws {
    let t = try Fixtures.load("conv4_simclr_step")
    let arena = ParameterArena()
    _ = try Conv4(arena: arena, prefix: "0", makeNorm: bn(arena))
    _ = try ProjectionHead(arena: arena, prefix: "1", inFeatures: 64, makeNorm: bn(arena))
    var expected: [String: [Int]] = [:]
    for (k, e) in t where k.hasPrefix("param.") { expected[String(k.dropFirst(6))] = e.shape }
    var built: [String: [Int]] = [:]
    for r in arena.parameterRanges + arena.bufferRanges { built[r.name] = r.shape }
    XCTAssertEqual(built, expected)
    // The convolutions and linear layers are ours (BN names come from the test stand-in).
    for i in 0..<4 {
      XCTAssertEqual(arena.parameter(named: "0.\(4 * i).weight")?.shape, expected["0.\(4 * i).weight"])
      XCTAssertEqual(arena.parameter(named: "0.\(4 * i).bias")?.shape, expected["0.\(4 * i).bias"])
    }
  }

  /// `depth` 3 builds nn.Sequential's `Linear, BN, ReLU, Linear, BN, ReLU, Linear` names and
  /// shapes, and its backward matches finite differences through all three Linear layers (with
  /// the identity for the norms: BN's own gradient is checked in the layer tests, and the
  /// biases before a BN have a zero gradient that finite differences only see as rounding).
  func testThreeLayerHeadNamesAndGradients() throws {
    let arena = ParameterArena()
    let head = try ProjectionHead(
      arena: arena, prefix: "head", inFeatures: 5, hidden: 4, outFeatures: 3, depth: 3, makeNorm: bn(arena))
    arena.allocate(seed: 3)
    var built: [String: [Int]] = [:]
    for r in arena.parameterRanges { built[r.name] = r.shape }
    XCTAssertEqual(built, [
      "head.0.weight": [4, 5], "head.0.bias": [4], "head.1.weight": [4], "head.1.bias": [4],
      "head.3.weight": [4, 4], "head.3.bias": [4], "head.4.weight": [4], "head.4.bias": [4],
      "head.6.weight": [3, 4], "head.6.bias": [3],
    ])
    XCTAssertEqual(head.forwardFLOPs(Shape(6, 5)).output.perSample, 3)
    let plain = ParameterArena()
    let chain = try ProjectionHead(
      arena: plain, prefix: "head", inFeatures: 5, hidden: 4, outFeatures: 3, depth: 3, makeNorm: identity)
    plain.allocate(seed: 3)
    XCTAssertEqual(plain.parameterRanges.map(\.name), [
      "head.0.weight", "head.0.bias", "head.3.weight", "head.3.bias", "head.6.weight", "head.6.bias",
    ])
    try checkGradients(chain, arena: plain, input: Shape(6, 5), seed: 21, eps: 1e-3, tolerance: 5e-3)
  }

  /// Loads `param.*` entries of a fixture into the arena under the same names.
  private func load(_ t: [String: SafeTensors.Entry], into arena: ParameterArena) {
    for r in arena.parameterRanges + arena.bufferRanges {
      guard let e = t["param.\(r.name)"] else { return XCTFail("fixture lacks param.\(r.name)") }
      arena.set(r, e.values)
    }
  }

  func testBasicBlockMatchesPyTorch() throws {
    let t = try Fixtures.load("basicblock_s2")
    let arena = ParameterArena()
    let block = try BasicBlock(
      arena: arena, prefix: "b", inChannels: 8, outChannels: 16, stride: 2,
      shortcutName: "shortcut", makeNorm: bn(arena))
    arena.allocate(seed: 0)
    // The fixture's names have no prefix: map "b.x" ↔ "x".
    for r in arena.parameterRanges + arena.bufferRanges {
      arena.set(r, t["param.\(r.name.dropFirst(2))"]!.values)
    }
    let x = t["x"]!
    let y = try block.forward(TestData.tensor(Shape(2, 8, 8, 8), x.values), training: true)
    XCTAssertEqual(y.shape, Shape(2, 16, 4, 4))
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-4, "basicblock y")
    arena.zeroGrads()
    let dx = try block.backward(TestData.tensor(y.shape, t["dy"]!.values))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-4, "basicblock dx")
    for r in arena.parameterRanges {
      assertClose(
        arena.gradient(of: r), t["grad.\(r.name.dropFirst(2))"]!.values, tolerance: 1e-4,
        "basicblock d\(r.name)")
    }
  }

  /// conv4 + projection head forward on the SimCLR step's batch of 16 gives PyTorch's `z`
  /// and BN running statistics (`after.*`).
  func testConv4HeadForwardMatchesPyTorch() throws {
    let t = try Fixtures.load("conv4_simclr_step")
    let arena = ParameterArena()
    let enc = try Conv4(arena: arena, prefix: "0", makeNorm: bn(arena))
    let head = try ProjectionHead(arena: arena, prefix: "1", inFeatures: 64, makeNorm: bn(arena))
    arena.allocate(seed: 0)
    load(t, into: arena)
    let x = TestData.tensor(Shape(16, 1, 28, 28), t["x1"]!.values + t["x2"]!.values)
    let z = try head.forward(try enc.forward(x, training: true), training: true)
    XCTAssertEqual(z.shape, Shape(16, 128, 1, 1))
    assertClose(z.toArray(), t["z"]!.values, tolerance: 1e-4, "z")
    for r in arena.bufferRanges {
      assertClose(arena.values(of: r), t["after.\(r.name)"]!.values, tolerance: 1e-4, r.name)
    }
  }
}
