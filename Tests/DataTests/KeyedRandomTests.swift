import XCTest

@testable import Data

final class KeyedRandomTests: XCTestCase {
  /// Random123's known-answer vectors (tests/kat_vectors) for Philox-4x32-10.
  func testPhiloxKnownAnswers() {
    XCTAssertEqual(
      KeyedRandom.philox(SIMD4(0, 0, 0, 0), key: SIMD2(0, 0)),
      SIMD4(0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
    XCTAssertEqual(
      KeyedRandom.philox(SIMD4(repeating: 0xffff_ffff), key: SIMD2(repeating: 0xffff_ffff)),
      SIMD4(0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
    XCTAssertEqual(
      KeyedRandom.philox(
        SIMD4(0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), key: SIMD2(0xa409_3822, 0x299f_31d0)),
      SIMD4(0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1))
  }

  func stream(_ seed: UInt64, _ epoch: Int, _ sample: Int, _ purpose: RandomPurpose, _ n: Int = 64) -> [UInt32] {
    var rng = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: purpose)
    return (0..<n).map { _ in rng.next32() }
  }

  func testSameKeySameStream() {
    XCTAssertEqual(stream(1, 2, 3, .view1), stream(1, 2, 3, .view1))
    // Interleaving other generators does not matter: the stream depends on its key only.
    var a = KeyedRandom(seed: 1, epoch: 2, sample: 3, purpose: .view1)
    var other = KeyedRandom(seed: 9, epoch: 9, sample: 9, purpose: .noise)
    var mixed: [UInt32] = []
    for _ in 0..<64 {
      mixed.append(a.next32())
      _ = other.next()
    }
    XCTAssertEqual(mixed, stream(1, 2, 3, .view1))
  }

  func testDifferentKeysDiffer() {
    let base = stream(1, 2, 3, .view1)
    let variants = [
      stream(2, 2, 3, .view1), stream(1, 3, 3, .view1), stream(1, 2, 4, .view1),
      stream(1, 2, 3, .view2), stream(1, 2, 3 + (1 << 32), .view1), stream(1, 2, -3, .view1),
    ]
    for v in variants {
      // Independent streams agree on a 32-bit word with probability 2^-32 per position.
      XCTAssertEqual(zip(base, v).filter { $0 == $1 }.count, 0)
    }
    XCTAssertNotEqual(stream(0, 0, 0, .shuffle), stream(0, 0, 1, .shuffle))
  }

  func testDistributions() {
    var rng = KeyedRandom(seed: 42, epoch: 0, sample: 0, purpose: .noise)
    let n = 20000
    var sum = 0.0, sumSq = 0.0
    var uSum = 0.0
    var counts = [Int](repeating: 0, count: 7)
    for _ in 0..<n {
      let g = Double(rng.nextGaussian())
      XCTAssertTrue(g.isFinite)
      sum += g
      sumSq += g * g
      let u = rng.nextFloat()
      XCTAssertTrue(u >= 0 && u < 1)
      uSum += Double(u)
      let f = rng.uniform(-2, 3)
      XCTAssertTrue(f >= -2 && f <= 3)
      counts[rng.nextInt(below: 7)] += 1
    }
    XCTAssertEqual(sum / Double(n), 0, accuracy: 0.05)
    XCTAssertEqual(sumSq / Double(n), 1, accuracy: 0.05)
    XCTAssertEqual(uSum / Double(n), 0.5, accuracy: 0.02)
    for c in counts { XCTAssertEqual(Double(c) / Double(n), 1.0 / 7, accuracy: 0.02) }
  }
}
