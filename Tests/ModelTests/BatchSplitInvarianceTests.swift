import XCTest

@testable import Model

/// A sample's activations do not depend on the other samples of its batch (without BatchNorm):
/// `Conv2d` and `Linear` forward of a batch give, for its first samples, bit for bit what a
/// smaller batch of those samples gives. This is W ≡ 1 in forward on any rank split — without
/// it a ReLU or max-pool input within rounding of a tie routes the gradient elsewhere on
/// another rank count (`Gemm.dependsOnCallShape`). Run on OpenBLAS (`useBuiltin = false`),
/// whose rounding depends on the call's shape, so the layers' per-sample calls are what is
/// tested; Parallax's own kernel, where the CPU has it, computes each element in one order.
final class BatchSplitInvarianceTests: XCTestCase {
  override func setUp() { Gemm.useBuiltin = false }
  override func tearDown() { Gemm.useBuiltin = true }

  func fill(_ s: Storage, _ n: Int, seed: UInt64) {
    var rng = SplitMix64(seed: seed)
    for i in 0..<n { s.data[i] = rng.nextUnitFloat() * 2 - 1 }
  }

  func testConv2dForwardOfASampleDoesNotDependOnItsBatch() throws {
    // resnet18's layer2 conv (3×3, bias-free) and conv4's (bias), 12 samples against 5.
    for (c, o, hw, bias) in [(128, 128, 14, false), (64, 64, 7, true)] {
      let arena = ParameterArena()
      let conv = Conv2d(arena: arena, name: "c", inChannels: c, outChannels: o, kernel: 3, stride: 1, padding: 1, bias: bias)
      arena.allocate(seed: 3)
      let x = Storage(12 * c * hw * hw)
      fill(x, 12 * c * hw * hw, seed: 5)
      let all = try conv.forward(Tensor(x.data, Shape(12, c, hw, hw)), training: true).toArray()
      let five = try conv.forward(Tensor(x.data, Shape(5, c, hw, hw)), training: true).toArray()
      let differ = zip(five, all.prefix(five.count)).filter { $0 != $1 }.count
      XCTAssertEqual(differ, 0, "conv \(c)→\(o) on \(hw)×\(hw): \(differ) of \(five.count) outputs differ between batch 12 and 5")
    }
  }

  func testLinearForwardOfARowDoesNotDependOnItsBatch() throws {
    // resnet18's head (512 → 512, 12 rows) and conv4's pre-pool probe shape (576 → 64, 128 rows).
    for (inF, outF, n) in [(512, 512, 12), (576, 64, 128)] {
      let arena = ParameterArena()
      let linear = Linear(arena: arena, name: "l", inFeatures: inF, outFeatures: outF)
      arena.allocate(seed: 3)
      let x = Storage(n * inF)
      fill(x, n * inF, seed: 6)
      let all = try linear.forward(Tensor(x.data, Shape(n, inF)), training: true).toArray()
      for rows in [1, 5, 6, 8, 50, 100] where rows < n {
        let part = try linear.forward(Tensor(x.data, Shape(rows, inF)), training: true).toArray()
        let differ = zip(part, all.prefix(part.count)).filter { $0 != $1 }.count
        XCTAssertEqual(differ, 0, "\(inF)→\(outF): \(differ) of \(part.count) outputs differ between batch \(n) and \(rows)")
      }
    }
  }
}
