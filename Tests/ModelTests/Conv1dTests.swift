import Foundation
import Model
import XCTest

/// `Conv1d`, `MaxPool1d` and `SampleCNN`: PyTorch fixtures (Tests/Fixtures), the naive
/// reference, finite-difference gradients and shapes.
final class Conv1dTests: XCTestCase {
  /// PyTorch's [N, C, L] as Parallax's [N, C, 1, L].
  private func signal(_ e: SafeTensors.Entry) -> Tensor {
    precondition(e.shape.count == 3)
    return TestData.tensor(Shape(e.shape[0], e.shape[1], 1, e.shape[2]), e.values)
  }

  private func checkFixture(_ name: String) throws {
    let (t, meta) = try SafeTensors.read(Fixtures.directory.appendingPathComponent("\(name).safetensors"))
    let w = t["weight"]!
    let arena = ParameterArena()
    let conv = Conv1d(
      arena: arena, name: "conv", inChannels: w.shape[1], outChannels: w.shape[0], kernel: w.shape[2],
      stride: Int(meta["stride"]!)!, padding: Int(meta["padding"]!)!, bias: t["bias"] != nil)
    arena.allocate(seed: 0)
    arena.set(arena.parameter(named: "conv.weight")!, w.values)
    if let b = t["bias"] { arena.set(arena.parameter(named: "conv.bias")!, b.values) }
    let y = try conv.forward(signal(t["x"]!), training: true)
    XCTAssertEqual(y.shape, signal(t["y"]!).shape, name)
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-4, "\(name) y")
    arena.zeroGrads()
    let dx = try conv.backward(signal(t["dy"]!))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-4, "\(name) dx")
    assertClose(
      arena.gradient(of: arena.parameter(named: "conv.weight")!), t["dweight"]!.values, tolerance: 1e-4,
      "\(name) dweight")
    if let db = t["dbias"] {
      assertClose(arena.gradient(of: arena.parameter(named: "conv.bias")!), db.values, tolerance: 1e-4, "\(name) dbias")
    }
  }

  func testConv1dStemFixture() throws { try checkFixture("conv1d_k3_s3") }
  func testConv1dBlockFixture() throws { try checkFixture("conv1d_k3_p1_bias") }

  func testMaxPool1dFixture() throws {
    let t = try Fixtures.load("maxpool1d_k3")
    let pool = MaxPool1d(kernel: 3)
    let y = try pool.forward(signal(t["x"]!), training: true)
    XCTAssertEqual(y.shape, Shape(2, 3, 1, 9))  // floor mode: 28 → 9
    assertClose(y.toArray(), t["y"]!.values, tolerance: 1e-6, "maxpool1d y")
    let dx = try pool.backward(signal(t["dy"]!))
    assertClose(dx.toArray(), t["dx"]!.values, tolerance: 1e-6, "maxpool1d dx")
  }

  /// The im2col kernel equals the naive reference, forward and backward, over strides,
  /// paddings and chunk sizes (a tiny column budget forces one sample per GEMM).
  func testConv1dMatchesReference() throws {
    let cases: [(k: Int, s: Int, p: Int, bias: Bool, l: Int, budget: Int)] = [
      (3, 3, 0, true, 20, 1 << 21), (3, 1, 1, true, 17, 1 << 21), (5, 2, 2, false, 23, 1 << 21),
      (3, 1, 1, true, 17, 8), (1, 1, 0, false, 9, 1 << 21), (4, 3, 3, true, 10, 30),
    ]
    for (i, c) in cases.enumerated() {
      let (n, cin, o) = (3, 2, 4)
      let arena = ParameterArena()
      let conv = Conv1d(arena: arena, name: "c", inChannels: cin, outChannels: o, kernel: c.k, stride: c.s, padding: c.p, bias: c.bias)
      conv.columnBudget = c.budget
      arena.allocate(seed: UInt64(i))
      let xs = Shape(n, cin, 1, c.l)
      let xv = TestData.uniform(xs.count, seed: UInt64(40 + i))
      let y = try conv.forward(TestData.tensor(xs, xv), training: true)
      let lo = Conv1dReference.outputLength(c.l, kernel: c.k, stride: c.s, padding: c.p)
      XCTAssertEqual(y.shape, Shape(n, o, 1, lo))
      let w = arena.values(of: arena.parameter(named: "c.weight")!)
      let b = arena.parameter(named: "c.bias").map { arena.values(of: $0) }
      var ref = [Float](repeating: 0, count: n * o * lo)
      b.withOptionalPointer { bp in
        Conv1dReference.forward(&ref, xv, w, bp, n: n, c: cin, l: c.l, o: o, kernel: c.k, stride: c.s, padding: c.p)
      }
      assertClose(y.toArray(), ref, tolerance: 1e-5, "case \(i) y")
      let dyv = TestData.uniform(y.count, seed: UInt64(80 + i))
      arena.zeroGrads()
      let dx = try conv.backward(TestData.tensor(y.shape, dyv))
      var rdx = [Float](repeating: 0, count: xs.count)
      var rdw = [Float](repeating: 0, count: w.count)
      var rdb: [Float]? = b.map { [Float](repeating: 0, count: $0.count) }
      rdb.withOptionalMutablePointer { dbp in
        Conv1dReference.backward(&rdx, &rdw, dbp, dyv, xv, w, n: n, c: cin, l: c.l, o: o, kernel: c.k, stride: c.s, padding: c.p)
      }
      assertClose(dx.toArray(), rdx, tolerance: 1e-5, "case \(i) dx")
      assertClose(arena.gradient(of: arena.parameter(named: "c.weight")!), rdw, tolerance: 1e-5, "case \(i) dw")
      if let rdb { assertClose(arena.gradient(of: arena.parameter(named: "c.bias")!), rdb, tolerance: 1e-5, "case \(i) db") }
    }
  }

  func testConv1dGradients() throws {
    for (i, (k, s, p, bias)) in [(3, 3, 0, true), (3, 1, 1, true), (5, 2, 1, false)].enumerated() {
      let arena = ParameterArena()
      let conv = Conv1d(arena: arena, name: "c", inChannels: 2, outChannels: 3, kernel: k, stride: s, padding: p, bias: bias)
      arena.allocate(seed: UInt64(20 + i))
      try checkGradients(conv, arena: arena, input: Shape(2, 2, 1, 12), seed: UInt64(i))
    }
  }

  func testMaxPool1dGradients() throws {
    // Distinct values so no maximum is within eps of another.
    let xs = Shape(2, 2, 1, 10)
    let values = (0..<xs.count).map { Float(($0 * 37) % 41) * 0.1 }
    try checkGradients(MaxPool1d(kernel: 3), arena: ParameterArena(), input: xs, seed: 3, inputValues: values)
  }

  func testShapeErrors() throws {
    let arena = ParameterArena()
    let conv = Conv1d(arena: arena, name: "c", inChannels: 2, outChannels: 3, kernel: 3, bias: false)
    arena.allocate(seed: 1)
    XCTAssertThrowsError(try conv.forward(TestData.tensor(Shape(1, 2, 2, 5), [Float](repeating: 0, count: 20)), training: true)) {
      XCTAssertTrue("\($0)".contains("c:"), "\($0)")
    }
    XCTAssertThrowsError(try MaxPool1d(kernel: 3).forward(TestData.tensor(Shape(1, 1, 1, 2), [0, 0]), training: true))
  }

  /// samplecnn: [N, 1, 1, 59049] → [N, 512], pre-pool [N, 512, 1, 3]; CLMR's state-dict names
  /// and its 2 362 624 convolution parameters.
  func testSampleCNNShapesAndNames() throws {
    let arena = ParameterArena()
    let enc = try SampleCNN(arena: arena, prefix: "encoder", makeNorm: { name, c in
      BatchNorm(arena: arena, name: name, channels: c)
    })
    arena.allocate(seed: 1)
    XCTAssertEqual(enc.featureDim, 512)
    XCTAssertEqual(enc.prePoolDim, 1536)
    XCTAssertEqual(arena.parameter(named: "encoder.0.0.weight")?.shape, [128, 1, 3])
    XCTAssertEqual(arena.parameter(named: "encoder.9.0.weight")?.shape, [512, 256, 3])
    XCTAssertEqual(arena.parameter(named: "encoder.10.0.weight")?.shape, [512, 512, 3])
    XCTAssertEqual(arena.parameter(named: "encoder.10.1.weight")?.shape, [512])
    let convParams = arena.parameterRanges.filter { $0.name.split(separator: ".")[2] == "0" }.map(\.count).reduce(0, +)
    XCTAssertEqual(convParams, 2_362_624)
    XCTAssertEqual(arena.parameterCount, 2_362_624 + 2 * (3 * 128 + 6 * 256 + 2 * 512))
    XCTAssertEqual(arena.bufferRanges.count, 2 * 11)

    // Forward and backward at full length (one sample, identity norm: fast in debug builds).
    let small = ParameterArena()
    let net = try SampleCNN(arena: small, prefix: "encoder", makeNorm: { _, _ in IdentityNorm() })
    small.allocate(seed: 1)
    try checkForward(net, batch: 1)
  }

  private func checkForward(_ enc: SampleCNN, batch: Int) throws {
    let xs = Shape(batch, 1, 1, 59049)
    let y = try enc.forward(TestData.tensor(xs, TestData.uniform(xs.count, seed: 2)), training: true)
    XCTAssertEqual(y.shape, Shape(batch, 512, 1, 1))
    XCTAssertEqual(enc.prePoolFeatures?.shape, Shape(batch, 512, 1, 3))
    XCTAssertTrue(y.toArray().allSatisfy { $0.isFinite && $0 >= 0 })
    let dx = try enc.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 3)))
    XCTAssertEqual(dx.shape, xs)
    XCTAssertGreaterThan(dx.toArray().map(abs).max()!, 0)
    XCTAssertThrowsError(try SampleCNN(arena: ParameterArena(), prefix: "e", inputLength: 20000, makeNorm: { _, _ in ReLU() }))
  }
}

extension Optional where Wrapped == [Float] {
  func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
    switch self {
    case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
    case .none: return body(nil)
    }
  }

  mutating func withOptionalMutablePointer<R>(_ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    switch self {
    case .some(var a):
      let r = a.withUnsafeMutableBufferPointer { body($0.baseAddress) }
      self = .some(a)
      return r
    case .none: return body(nil)
    }
  }
}
