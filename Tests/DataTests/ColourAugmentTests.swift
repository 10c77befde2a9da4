import XCTest

@testable import Data

/// SimCLR's colour steps on RGB images: each does what it says on an input where doing
/// nothing (or the wrong thing) would fail.
final class ColourAugmentTests: XCTestCase {
  /// A 4×4 RGB image, planar, with saturated and gray pixels.
  let image: [UInt8] = (0..<48).map { i in
    let c = i / 16, p = i % 16
    return p < 4 ? 128 : UInt8((p * 53 + c * 97) % 256)
  }

  /// Only colour jitter, with the given magnitudes; normalisation off (mean 0, std 1).
  func jitterOnly(brightness: Float = 0, contrast: Float = 0, saturation: Float = 0, hue: Float = 0) -> SimCLRAugment {
    var c = SimCLRAugment.Config.identity
    c.jitterProbability = 1
    c.brightness = brightness
    c.contrast = contrast
    c.saturation = saturation
    c.hue = hue
    c.rgbMean = [0, 0, 0]
    c.rgbStd = [1, 1, 1]
    return SimCLRAugment(config: c)
  }

  func view(_ a: SimCLRAugment, seed: UInt64 = 3) -> ([Float], ImageAugmentationSet) {
    var out = [Float](repeating: 0, count: 48)
    var rng = KeyedRandom(seed: seed, epoch: 0, sample: 1, purpose: .view1)
    let applied = a.apply(image, channels: 3, height: 4, width: 4, into: &out, rng: &rng)
    return (out, applied)
  }

  func pixel(_ x: [Float], _ i: Int) -> [Float] { [x[i], x[16 + i], x[32 + i]] }

  func testHueRotatesInHSVKeepingValueAndChromaOfEveryPixel() {
    var changed = false
    for seed in UInt64(1)...5 {
      let (out, applied) = view(jitterOnly(hue: 0.5), seed: seed)
      XCTAssertTrue(applied.contains(.jitter))
      for i in 0..<16 {
        let src = pixel(image.map { Float($0) / 255 }, i), dst = pixel(out, i)
        XCTAssertEqual(dst.max()!, src.max()!, accuracy: 1e-5, "value")
        XCTAssertEqual(dst.min()!, src.min()!, accuracy: 1e-5, "max − min")
        if zip(src, dst).contains(where: { abs($0 - $1) > 1e-3 }) { changed = true }
      }
    }
    XCTAssertTrue(changed, "some hue shift moved some pixel")
  }

  /// A third of a turn maps every pixel (r, g, b) to (b, r, g): red becomes green.
  func testHueShiftOfAThirdTurnRotatesTheChannels() {
    // 256 pseudo-random pixels: every hue sector, before and after the shift.
    var rng = KeyedRandom(seed: 4, epoch: 0, sample: 0, purpose: .view1)
    var px = (0..<768).map { _ in rng.nextFloat() }
    let before = px
    SimCLRAugment.shiftHue(&px, plane: 256, 1.0 / 3)
    func pixel(_ x: [Float], _ i: Int) -> [Float] { [x[i], x[256 + i], x[512 + i]] }
    for i in 0..<256 {
      let s = pixel(before, i), d = pixel(px, i)
      XCTAssertEqual(d[0], s[2], accuracy: 1e-5)
      XCTAssertEqual(d[1], s[0], accuracy: 1e-5)
      XCTAssertEqual(d[2], s[1], accuracy: 1e-5)
    }
  }

  func testSaturationZeroIsGrayscaleAndTwoMovesAwayFromGray() {
    var c = jitterOnly().config
    c.saturation = 1  // factor drawn from [0, 2]
    let (out, _) = view(SimCLRAugment(config: c), seed: 7)
    // Each pixel stays on the line through its luma: out − luma ∥ in − luma with one factor.
    var factors: [Float] = []
    for i in 4..<16 {
      let src = pixel(image.map { Float($0) / 255 }, i), dst = pixel(out, i)
      let y = 0.299 * src[0] + 0.587 * src[1] + 0.114 * src[2]
      let k = src.indices.max { abs(src[$0] - y) < abs(src[$1] - y) }!
      let f = (dst[k] - y) / (src[k] - y)
      if dst.allSatisfy({ $0 > 1e-4 && $0 < 1 - 1e-4 }) { factors.append(f) }
    }
    XCTAssertFalse(factors.isEmpty)
    XCTAssertLessThan(factors.max()! - factors.min()!, 1e-3, "one saturation factor for the image: \(factors)")
    XCTAssertGreaterThan(abs(factors[0] - 1), 1e-3, "the factor is not 1")
  }

  func testRandomGrayscaleSetsEveryChannelToLumaAndIsLabelled() {
    var c = SimCLRAugment.Config.identity
    c.grayscaleProbability = 1
    c.rgbMean = [0, 0, 0]
    c.rgbStd = [1, 1, 1]
    let (out, applied) = view(SimCLRAugment(config: c))
    XCTAssertEqual(applied, ImageAugmentationSet([.grayscale]))
    for i in 0..<16 {
      let s = pixel(image.map { Float($0) / 255 }, i)
      let y = 0.299 * s[0] + 0.587 * s[1] + 0.114 * s[2]
      for v in pixel(out, i) { XCTAssertEqual(v, y, accuracy: 1e-6) }
    }
    var row = [Float](repeating: -1, count: 6)
    applied.writeMultiHot(into: &row, channels: 3)
    XCTAssertEqual(row, [0, 0, 0, 0, 0, 1])
  }

  func testOneChannelImagesKeepFiveLabelColumnsAndNeverDrawGrayscale() {
    XCTAssertEqual(ImageAugmentationSet.columns(channels: 1), 5)
    XCTAssertEqual(ImageAugmentationSet.columns(channels: 3), 6)
    for s in 0..<200 {
      var rng = KeyedRandom(seed: 9, epoch: 0, sample: s, purpose: .transform)
      XCTAssertFalse(SimCLRAugment.sampleAugmentations(rng: &rng).contains(.grayscale))
    }
  }
}
