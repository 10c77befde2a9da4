import XCTest

@testable import Data

/// MultiFashion (issue 17): two items on a 36×36 canvas, left at (0, 0), right at (6, 6), the
/// maximum where they overlap; labels left and right; pairing a function of the seed.
final class MultiFashionTests: XCTestCase {
  /// Eight synthetic items: item k has pixel (y, x) = 10k + (y + x) % 7 + 1 (never 0, and
  /// each item distinct), label 9 − k.
  func items() throws -> ImageDataset {
    var pixels: [UInt8] = []
    for k in 0..<8 {
      for y in 0..<28 { for x in 0..<28 { pixels.append(UInt8(10 * k + (y + x) % 7 + 1)) } }
    }
    return try ImageDataset(count: 8, height: 28, width: 28, pixels: pixels, labels: (0..<8).map { Int32(9 - $0) })
  }

  func canvas(_ set: MultiFashion, _ i: Int) throws -> [UInt8] {
    var out = [UInt8](repeating: 0xEE, count: 36 * 36)
    try out.withUnsafeMutableBufferPointer { try set.pixels(i, into: $0.baseAddress!) }
    return out
  }

  func testCanvasIsLeftItemAtOriginRightItemAtSixSixMaxWhereTheyOverlap() throws {
    let base = try items()
    let set = try MultiFashion(base: base, seed: 3, split: .train)
    XCTAssertEqual(set.count, 8)
    XCTAssertEqual([set.channels, set.height, set.width], [1, 36, 36])
    for i in 0..<8 {
      let j = set.partners[i]
      XCTAssertNotEqual(j, i, "sample \(i) paired with itself")
      let c = try canvas(set, i)
      func item(_ k: Int, _ y: Int, _ x: Int) -> UInt8 {
        (0..<28).contains(y) && (0..<28).contains(x) ? base.pixelBytes[k * 784 + y * 28 + x] : 0
      }
      for y in 0..<36 {
        for x in 0..<36 {
          let expected = max(item(i, y, x), item(j, y - 6, x - 6))
          XCTAssertEqual(c[y * 36 + x], expected, "sample \(i) pixel (\(y), \(x))")
          if c[y * 36 + x] != expected { return }
        }
      }
      // The corners of the two items hold one item each; outside both the canvas is zero
      // (rows and columns 34, 35 and the off-diagonal corners).
      XCTAssertEqual(c[0], base.pixelBytes[i * 784])
      XCTAssertEqual(c[33 * 36 + 33], base.pixelBytes[j * 784 + 27 * 28 + 27])
      XCTAssertEqual(c[35 * 36 + 35], 0)
      XCTAssertEqual(c[35 * 36 + 0], 0)
      XCTAssertEqual(c[0 * 36 + 35], 0)
      // Labels by value: left is item i's class, right its partner's.
      XCTAssertEqual(set.label(i, slot: 0), 9 - i)
      XCTAssertEqual(set.label(i, slot: 1), 9 - j)
      XCTAssertEqual(set.label(i), 9 - i)
    }
  }

  func testPairingIsAFunctionOfSeedAndSplit() throws {
    let base = try items()
    let a = try MultiFashion(base: base, seed: 3, split: .train).partners
    XCTAssertEqual(try MultiFashion(base: base, seed: 3, split: .train).partners, a)
    XCTAssertNotEqual(try MultiFashion(base: base, seed: 4, split: .train).partners, a)
    XCTAssertNotEqual(try MultiFashion(base: base, seed: 3, split: .test).partners, a)
    // Batch reads are the per-sample canvases in order.
    let set = try MultiFashion(base: base, seed: 3, split: .train)
    var batch = [UInt8](repeating: 0, count: 3 * 1296)
    try batch.withUnsafeMutableBufferPointer { try set.pixels(batch: [5, 0, 5], into: $0.baseAddress!, reader: nil) }
    XCTAssertEqual(Array(batch[0..<1296]), try canvas(set, 5))
    XCTAssertEqual(Array(batch[1296..<2592]), try canvas(set, 0))
    XCTAssertEqual(Array(batch[2592...]), try canvas(set, 5))
  }

  /// On the real test split: partners are spread over the set (not a shift or a constant),
  /// and the right labels are not the left ones.
  func testRealSplitPairsAcrossTheSet() throws {
    let set = try MultiFashion(base: TestSupport.testSplit, seed: 0, split: .test)
    XCTAssertEqual(set.count, 10_000)
    XCTAssertEqual(set.partners.indices.filter { set.partners[$0] == $0 }.count, 0)
    XCTAssertGreaterThan(Set(set.partners).count, 6000)  // ≈ 1 − 1/e of 10 000 for uniform draws
    let same = (0..<set.count).filter { set.label($0, slot: 0) == set.label($0, slot: 1) }.count
    XCTAssertLessThan(same, 1300)  // ≈ 10 % for independent classes
    XCTAssertGreaterThan(same, 700)
  }

  func testRejectsItemsThatAreNot28By28() throws {
    let small = try ImageDataset(count: 2, height: 4, width: 4, pixels: [UInt8](repeating: 1, count: 32), labels: [0, 1])
    TestSupport.assertThrowsDataError(["1×28×28", "4×4"]) { _ = try MultiFashion(base: small, seed: 0, split: .train) }
  }
}
