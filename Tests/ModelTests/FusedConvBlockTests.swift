import Model
import XCTest

/// conv4's block 1 as one pass (`FusedConvBlock`: the convolution recomputed plane by plane in
/// each pass, never stored) against the convolution and the BN-ReLU-pool layers it replaces, in
/// fp32 and bf16, on 1- and 3-channel inputs.
final class FusedConvBlockTests: XCTestCase {
  private func rel(_ x: [Float], _ y: [Float]) -> Double {
    var d = 0.0, n = 0.0
    for (p, q) in zip(x, y) {
      d += Double(p - q) * Double(p - q)
      n += Double(q) * Double(q)
    }
    return (d / max(n, 1e-300)).squareRoot()
  }

  private struct Run {
    var y: [Float]
    var grads: [String: [Float]] = [:]
    var buffers: [String: [Float]] = [:]
  }

  private func run(_ p: GemmPrecision, fused: Bool, channels: Int, size: Int) throws -> Run {
    let arena = ParameterArena()
    let enc = try Conv4(arena: arena, prefix: "encoder", inChannels: channels, width: 8, inputSize: size) {
      name, c in BatchNorm(arena: arena, name: name, channels: c)
    }
    arena.allocate(seed: 3)
    arena.gemmPrecision = p
    // Only a block whose input gradient is not needed runs fused (training's first block).
    enc.computesInputGradient = !fused
    let s = Shape(6, channels, size, size)
    let y = try enc.forward(TestData.tensor(s, TestData.uniform(s.count, seed: 4, -1, 2)), training: true)
    XCTAssertEqual(enc.ranFusedFirstBlock, fused, "\(p) fused \(fused)")
    _ = try enc.backward(TestData.tensor(y.shape, TestData.uniform(y.count, seed: 5)))
    var r = Run(y: y.toArray())
    for g in arena.parameterRanges { r.grads[g.name] = arena.gradient(of: g) }
    for b in arena.bufferRanges { r.buffers[b.name] = arena.values(of: b) }
    // Evaluation runs the plain layers.
    _ = try enc.forward(TestData.tensor(s, TestData.uniform(s.count, seed: 4, -1, 2)), training: false)
    XCTAssertFalse(enc.ranFusedFirstBlock, "evaluation forward")
    return r
  }

  func testFusedFirstBlockMatchesTheLayers() throws {
    for (channels, size) in [(1, 28), (3, 16)] {
      var fusedOutputs: [[Float]] = []
      for p in [GemmPrecision.fp32, .bf16] {
        let what = "\(p) \(channels)×\(size)×\(size)"
        let plain = try run(p, fused: false, channels: channels, size: size)
        let fused = try run(p, fused: true, channels: channels, size: size)
        fusedOutputs.append(fused.y)
        // The two sum the same products in another order (fp32 rounding, ~1e-7).
        XCTAssertLessThan(rel(fused.y, plain.y), 1e-5, "\(what) output")
        for (name, b) in plain.buffers {
          XCTAssertLessThan(rel(fused.buffers[name]!, b), 1e-5, "\(what) \(name)")
        }
        let total = plain.grads.values.flatMap { $0 }.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertGreaterThan(total, 0)
        for (name, g) in plain.grads {
          let f = fused.grads[name]!
          if name == "encoder.0.bias" {
            // It feeds a BatchNorm: its true gradient is 0, both return rounding noise.
            let norm = f.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertLessThan(norm, 1e-5 * total, "\(what) \(name) should be ~0")
          } else {
            XCTAssertLessThan(rel(f, g), 1e-4, "\(what) gradient \(name)")
          }
        }
      }
      // bf16 rounds the fused block's operands too.
      XCTAssertGreaterThan(rel(fusedOutputs[1], fusedOutputs[0]), 1e-5, "\(channels) channels: bf16 not applied")
    }
  }
}
