import XCTest

@testable import Data

final class SimCLRAugmentTests: XCTestCase {
  let ds = TestSupport.testSplit
  let n = 28 * 28

  func view(_ aug: SimCLRAugment, sample: Int, purpose: RandomPurpose = .view1, seed: UInt64 = 1) -> [Float] {
    var out = [Float](repeating: .nan, count: n)
    var rng = KeyedRandom(seed: seed, epoch: 0, sample: sample, purpose: purpose)
    ds.pixelBytes.withUnsafeBufferPointer { px in
      out.withUnsafeMutableBufferPointer {
        aug.apply(px.baseAddress! + sample * n, height: 28, width: 28, into: $0.baseAddress!, rng: &rng)
      }
    }
    return out
  }

  func normalized(_ sample: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: n)
    ds.pixelBytes.withUnsafeBufferPointer { px in
      out.withUnsafeMutableBufferPointer {
        SimCLRAugment.normalize(px.baseAddress! + sample * n, count: n, into: $0.baseAddress!)
      }
    }
    return out
  }

  func testNormalizeConstants() {
    let out = normalized(0)
    let px = Array(ds.image(0))
    for i in 0..<n {
      XCTAssertEqual(out[i], (Float(px[i]) / 255 - 0.2860) / 0.3530, accuracy: 1e-5)
    }
    XCTAssertEqual(FashionMNIST.mean, 0.2860)
    XCTAssertEqual(FashionMNIST.std, 0.3530)
  }

  func testSameKeySameOutput() {
    let aug = SimCLRAugment()
    for s in [0, 5, 77] {
      let a = view(aug, sample: s)
      let b = view(aug.copy(), sample: s)
      XCTAssertEqual(a, b)
      XCTAssertTrue(a.allSatisfy { $0.isFinite })
    }
  }

  func testDifferentKeysDifferentOutput() {
    let aug = SimCLRAugment()
    let a = view(aug, sample: 3, purpose: .view1)
    XCTAssertNotEqual(a, view(aug, sample: 3, purpose: .view2))
    XCTAssertNotEqual(a, view(aug, sample: 3, purpose: .view1, seed: 2))
    XCTAssertNotEqual(a, normalized(3))
  }

  func testIdentityConfigIsNormalize() {
    let aug = SimCLRAugment(config: .identity)
    for s in [0, 1, 2] { XCTAssertEqual(view(aug, sample: s), normalized(s)) }
  }

  func testFlipOnly() {
    var config = SimCLRAugment.Config.identity
    config.flipProbability = 1
    let flipped = view(SimCLRAugment(config: config), sample: 4)
    let plain = normalized(4)
    for y in 0..<28 {
      for x in 0..<28 { XCTAssertEqual(flipped[y * 28 + x], plain[y * 28 + 27 - x]) }
    }
  }

  func testBlurKeepsConstantImage() {
    var config = SimCLRAugment.Config.identity
    config.blurProbability = 1
    config.blurKernelSizes = [5]
    let aug = SimCLRAugment(config: config)
    let src = [UInt8](repeating: 100, count: 5 * 7)
    var out = [Float](repeating: 0, count: 35)
    var expected = [Float](repeating: 0, count: 35)
    var rng = KeyedRandom(seed: 0, epoch: 0, sample: 0, purpose: .view1)
    aug.apply(src, height: 5, width: 7, into: &out, rng: &rng)
    SimCLRAugment.normalize(src, count: 35, into: &expected)
    for i in 0..<35 { XCTAssertEqual(out[i], expected[i], accuracy: 1e-5) }
  }

  func testCropBoxesStayInside() {
    let aug = SimCLRAugment()
    var areas: [Int] = []
    for s in 0..<500 {
      var rng = KeyedRandom(seed: 3, epoch: 1, sample: s, purpose: .view1)
      let (top, left, h, w) = aug.cropBox(height: 28, width: 28, rng: &rng)
      XCTAssertTrue(top >= 0 && left >= 0 && h >= 1 && w >= 1 && top + h <= 28 && left + w <= 28)
      areas.append(h * w)
    }
    // Scale (0.2, 1): crops of very different sizes occur.
    XCTAssertLessThan(areas.min()!, 784 / 3)
    XCTAssertGreaterThan(areas.max()!, 784 * 3 / 4)
  }

  func testReflect() {
    XCTAssertEqual((-3...8).map { SimCLRAugment.reflect($0, 5) }, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0])
  }
}
