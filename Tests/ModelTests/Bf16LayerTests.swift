import CKernels
import Foundation
import Model
import XCTest

/// Each GEMM layer with `arena.gemmPrecision = .bf16` against the same layer in fp32: forward,
/// input gradient and every parameter gradient, element by element, within
/// `Bf16GemmTests.againstExact(K)` + the fp32 layer's own (K + 2)·2⁻²⁴ of S, where S is the
/// element's Σ|w||x| (forward), Σ|w||dy| (dX) or Σ|dy||x| (dW) — computed by running the fp32
/// layer on |weights|, |x| and |dy| — and K the GEMM's depth. The bias gradient is an fp32 sum
/// of dy in both, so it falls inside the same bound (it is in fact equal).
final class Bf16LayerTests: XCTestCase {
  struct Run {
    var y: [Float]
    var dx: [Float]
    var grads: [Float]
  }

  /// Forward and backward of the layer `make` builds, on a fresh arena (seeded, so every run
  /// has the same weights), in `precision`; with `absolute`, weights, x and dy are |·|.
  func run(
    _ precision: GemmPrecision, absolute: Bool, input: Shape, _ make: (ParameterArena) -> Layer
  ) throws -> Run {
    let arena = ParameterArena()
    let layer = make(arena)
    arena.allocate(seed: 5)
    arena.gemmPrecision = precision
    if absolute { for i in 0..<arena.parameterCount { arena.params[i] = abs(arena.params[i]) } }
    var xv = TestData.uniform(input.count, seed: 7)
    if absolute { xv = xv.map(abs) }
    let y = try layer.forward(TestData.tensor(input, xv), training: true)
    let yv = y.toArray()
    var dyv = TestData.uniform(y.count, seed: 8)
    if absolute { dyv = dyv.map(abs) }
    let dx = try layer.backward(TestData.tensor(y.shape, dyv)).toArray()
    return Run(y: yv, dx: dx, grads: Array(UnsafeBufferPointer(start: arena.grads, count: arena.parameterCount)))
  }

  /// bf16 against fp32 for one layer; `k` the depth of the forward, dX and dW GEMMs. Returns
  /// the worst forward error in units of S.
  @discardableResult
  func compare(
    _ label: String, input: Shape, k: (fwd: Int, dx: Int, dw: Int), line: UInt = #line,
    _ make: (ParameterArena) -> Layer
  ) throws -> Double {
    let fp32 = try run(.fp32, absolute: false, input: input, make)
    let bf16 = try run(.bf16, absolute: false, input: input, make)
    let s = try run(.fp32, absolute: true, input: input, make)
    func bound(_ k: Int) -> Double { Bf16GemmTests.againstExact(k) + Double(k + 2) * pow(2, -24) }
    let worst = assertWithin(bf16.y, fp32.y, s.y, bound(k.fwd), "\(label) forward", line: line)
    assertWithin(bf16.dx, fp32.dx, s.dx, bound(k.dx), "\(label) input gradient", line: line)
    assertWithin(bf16.grads, fp32.grads, s.grads, bound(k.dw), "\(label) parameter gradients", line: line)
    // The bf16 layer did round: an fp32 GEMM would be ~1e-7·S off, not ~2⁻⁹.
    XCTAssertGreaterThan(worst, pow(2, -14), "\(label): bf16 forward equals fp32 — precision not applied?", line: line)
    return worst
  }

  /// conv4's and resnet18's convolution shapes, on the implicit GEMMs (the fast path here) and
  /// on im2col + GEMM + col2im (`usesImplicitGemm = false`, and the portable loops).
  func testConv2dBf16MatchesFp32WithinBound() throws {
    // (input, out channels, kernel, padding, stride, bias)
    let cases: [(Shape, Int, Int, Int, Int, Bool)] = [
      (Shape(4, 1, 28, 28), 64, 3, 1, 1, true),  // conv4 stem
      (Shape(4, 64, 14, 14), 64, 3, 1, 1, true),  // conv4 block 2: the NHWC dW kernel in fp32
      (Shape(2, 64, 16, 16), 128, 3, 1, 2, false),  // resnet18 downsampling 3×3
      (Shape(2, 64, 16, 16), 128, 1, 0, 2, false),  // resnet18 1×1 shortcut
      (Shape(2, 130, 5, 5), 3, 3, 1, 1, true),  // dX with more than 128 rows
    ]
    for (s, o, kk, pad, st, bias) in cases {
      let ho = (s.h + 2 * pad - kk) / st + 1, wo = (s.w + 2 * pad - kk) / st + 1
      let k = (fwd: s.c * kk * kk, dx: o * kk * kk, dw: s.n * ho * wo)
      for implicit in [true, false] {
        try compare("conv \(s) → \(o) k \(kk) stride \(st) implicit \(implicit)", input: s, k: k) { arena in
          let c = Conv2d(
            arena: arena, name: "c", inChannels: s.c, outChannels: o, kernel: kk, stride: st, padding: pad,
            bias: bias)
          c.usesImplicitGemm = implicit
          return c
        }
      }
    }
  }

  func testLinearBf16MatchesFp32WithinBound() throws {
    for (n, i, o) in [(16, 576, 64), (12, 64, 128), (5, 512, 512)] {
      try compare("linear \(n)×\(i) → \(o)", input: Shape(n, i), k: (fwd: i, dx: o, dw: n)) { arena in
        Linear(arena: arena, name: "l", inFeatures: i, outFeatures: o)
      }
    }
  }

  /// samplecnn's convolutions (raw waveform, stride 3) and a padded one.
  func testConv1dBf16MatchesFp32WithinBound() throws {
    // (input N×C×L, out channels, kernel, stride, padding, bias)
    let cases: [(Shape, Int, Int, Int, Int, Bool)] = [
      (Shape(2, 1, 1, 729), 32, 3, 3, 0, true),  // samplecnn stem
      (Shape(2, 32, 1, 81), 64, 3, 1, 1, true),
      (Shape(3, 130, 1, 20), 5, 3, 1, 1, false),  // dX with more than 128 rows
    ]
    for (s, o, kk, st, pad, bias) in cases {
      let lo = (s.w + 2 * pad - kk) / st + 1
      try compare("conv1d \(s) → \(o) k \(kk) stride \(st)", input: s, k: (fwd: s.c * kk, dx: o, dw: s.n * lo)) { arena in
        Conv1d(arena: arena, name: "c", inChannels: s.c, outChannels: o, kernel: kk, stride: st, padding: pad, bias: bias)
      }
    }
  }

  func testConvTranspose2dBf16MatchesFp32WithinBound() throws {
    let s = Shape(2, 8, 7, 7)
    try compare("conv-transpose \(s) → 4 k 4 stride 2", input: s, k: (fwd: 8, dx: 4 * 16, dw: 49)) { arena in
      ConvTranspose2d(arena: arena, name: "t", inChannels: 8, outChannels: 4, kernel: 4, stride: 2, padding: 1, bias: true)
    }
  }

  /// A whole conv4 encoder (conv, BN, ReLU, pool ×4) in bf16 against fp32. BN and the pools
  /// stay fp32, so the difference is the GEMMs' rounding carried through — and amplified: a
  /// max-pool window whose two largest values are within rounding of each other routes its
  /// gradient elsewhere, and BN divides by batch statistics. No element bound survives that, so
  /// the yardstick is the network's own sensitivity: an fp32 run whose input and weights are
  /// perturbed by up to u = 2⁻⁸ relative (what rounding them to bf16 does) moves each weight
  /// gradient by some relative L2 amount; bf16's move must be within 2× of it (measured ratios
  /// printed). A bf16 kernel that mixed up elements would be far off (~100 %).
  func testConv4EncoderBf16IsAsCloseToFp32AsARoundingPerturbation() throws {
    func go(_ p: GemmPrecision, perturb: Bool) throws -> (y: [Float], g: [String: [Float]]) {
      let arena = ParameterArena()
      let enc = try Conv4(arena: arena, prefix: "encoder") { name, channels in
        BatchNorm(arena: arena, name: name, channels: channels)
      }
      arena.allocate(seed: 3)
      arena.gemmPrecision = p
      var xv = TestData.uniform(32 * 784, seed: 4)
      if perturb {
        let r = TestData.uniform(arena.parameterCount + xv.count, seed: 6)
        for i in 0..<arena.parameterCount { arena.params[i] *= 1 + Float(Bf16GemmTests.u) * r[i] }
        for i in xv.indices { xv[i] *= 1 + Float(Bf16GemmTests.u) * r[arena.parameterCount + i] }
      }
      let y = try enc.forward(TestData.tensor(Shape(32, 1, 28, 28), xv), training: true)
      _ = try enc.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 5)))
      var g: [String: [Float]] = [:]
      for r in arena.parameterRanges { g[r.name] = arena.gradient(of: r) }
      return (y.toArray(), g)
    }
    let a = try go(.fp32, perturb: false), b = try go(.bf16, perturb: false)
    let c = try go(.fp32, perturb: true)
    func rel(_ x: [Float], _ y: [Float]) -> Double {
      var d = 0.0, n = 0.0
      for (p, q) in zip(x, y) {
        d += Double(p - q) * Double(p - q)
        n += Double(p) * Double(p)
      }
      return (d / max(n, 1e-300)).squareRoot()
    }
    let (ry, py) = (rel(a.y, b.y), rel(a.y, c.y))
    print("bf16 conv4 encoder: output relative L2 error bf16 \(ry), fp32 perturbed \(py)")
    XCTAssertGreaterThan(ry, 1e-5, "bf16 encoder output equals fp32's: precision not applied?")
    XCTAssertLessThan(ry, 2 * py)
    for name in a.g.keys.sorted() where name.hasSuffix(".weight") {
      let (r, p) = (rel(a.g[name]!, b.g[name]!), rel(a.g[name]!, c.g[name]!))
      print("bf16 conv4 encoder: \(name) gradient relative L2 error bf16 \(r), fp32 perturbed \(p) (ratio \(r / p))")
      XCTAssertLessThan(r, 2 * p, name)
    }
  }
}
