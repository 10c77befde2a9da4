import Foundation
import Model
import XCTest

/// Layers against PyTorch (Tests/Fixtures): forward `y`, and `dx`, `dweight`, `dbias` for the
/// fixture's `dy`, within 1e-4 relative error (the references are float64 stored as float32).
final class LayerFixtureTests: XCTestCase {
  private func shape(_ e: SafeTensors.Entry) -> Shape {
    let s = e.shape + Array(repeating: 1, count: 4 - e.shape.count)
    return Shape(s[0], s[1], s[2], s[3])
  }

  private func input(_ t: [String: SafeTensors.Entry], _ key: String) -> Tensor {
    TestData.tensor(shape(t[key]!), t[key]!.values)
  }

  private func checkConv(_ name: String) throws {
    let (t, meta) = try SafeTensors.read(Fixtures.directory.appendingPathComponent("\(name).safetensors"))
    let stride = Int(meta["stride"]!)!
    let padding = Int(meta["padding"]!)!
    let w = t["weight"]!
    let arena = ParameterArena()
    let conv = Conv2d(
      arena: arena, name: "conv", inChannels: w.shape[1], outChannels: w.shape[0],
      kernel: w.shape[2], stride: stride, padding: padding, bias: t["bias"] != nil)
    arena.allocate(seed: 0)
    arena.set(arena.parameter(named: "conv.weight")!, w.values)
    if let b = t["bias"] { arena.set(arena.parameter(named: "conv.bias")!, b.values) }
    let y = try conv.forward(input(t, "x"), training: true)
    XCTAssertEqual(y.shape, shape(t["y"]!), name)
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-4, "\(name) y")
    arena.zeroGrads()
    let dx = try conv.backward(input(t, "dy"))
    XCTAssertEqual(dx.shape, shape(t["x"]!), name)
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-4, "\(name) dx")
    assertClose(
      arena.gradient(of: arena.parameter(named: "conv.weight")!), t["dweight"]!.values,
      tolerance: 1e-4, "\(name) dweight")
    if let db = t["dbias"] {
      assertClose(
        arena.gradient(of: arena.parameter(named: "conv.bias")!), db.values, tolerance: 1e-4,
        "\(name) dbias")
    } else {
      XCTAssertNil(arena.parameter(named: "conv.bias"), name)
    }
  }

  func testConv2d3x3Stride1Bias() throws { try checkConv("conv2d_3x3_s1_bias") }
  func testConv2d3x3Stride2() throws { try checkConv("conv2d_3x3_s2") }
  func testConv2d1x1Stride2() throws { try checkConv("conv2d_1x1_s2") }
  func testConv2d3x3Stride1OneChannel() throws { try checkConv("conv2d_3x3_s1_cin1") }

  func testLinear() throws {
    let t = try Fixtures.load("linear")
    let w = t["weight"]!
    let arena = ParameterArena()
    let lin = Linear(arena: arena, name: "fc", inFeatures: w.shape[1], outFeatures: w.shape[0])
    arena.allocate(seed: 0)
    arena.set(arena.parameter(named: "fc.weight")!, w.values)
    arena.set(arena.parameter(named: "fc.bias")!, t["bias"]!.values)
    let y = try lin.forward(input(t, "x"), training: true)
    XCTAssertEqual(y.shape, shape(t["y"]!))
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-4, "linear y")
    arena.zeroGrads()
    let dx = try lin.backward(input(t, "dy"))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-4, "linear dx")
    assertClose(
      arena.gradient(of: arena.parameter(named: "fc.weight")!), t["dweight"]!.values,
      tolerance: 1e-4, "linear dweight")
    assertClose(
      arena.gradient(of: arena.parameter(named: "fc.bias")!), t["dbias"]!.values,
      tolerance: 1e-4, "linear dbias")
  }

  func testMaxPool2d() throws {
    let t = try Fixtures.load("maxpool2d_k2s2")
    let pool = MaxPool2d(kernel: 2, stride: 2)
    let y = try pool.forward(input(t, "x"), training: true)
    XCTAssertEqual(y.shape, shape(t["y"]!))  // floor mode: 7 → 3
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-6, "maxpool y")
    assertClose(
      try pool.backward(input(t, "dy")).toArray(), t["dx"]!.values, tolerance: 1e-6,
      "maxpool dx")
  }

  func testGlobalAvgPool() throws {
    let t = try Fixtures.load("global_avgpool")
    let pool = GlobalAvgPool()
    let y = try pool.forward(input(t, "x"), training: true)
    XCTAssertEqual(y.shape, shape(t["y"]!))
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-5, "avgpool y")
    let dx = try pool.backward(input(t, "dy"))
    XCTAssertEqual(dx.shape, shape(t["x"]!))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-5, "avgpool dx")
  }

  /// The fixture is hardtanh(1.5·x) on [-1, 1]: feed 1.5·x, and dx = 1.5 · (our dx).
  func testHardtanh() throws {
    let t = try Fixtures.load("hardtanh")
    let act = Hardtanh(min: -1, max: 1)
    let x = t["x"]!
    let y = try act.forward(TestData.tensor(shape(x), x.values.map { 1.5 * $0 }), training: true)
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-6, "hardtanh y")
    let dx = try act.backward(input(t, "dy")).toArray().map { 1.5 * $0 }
    assertClose(dx, t["dx"]!.values, tolerance: 1e-6, "hardtanh dx")
  }
}
