import Foundation
import XCTest

@testable import Data

/// Amortised invariance learning on audio (issue 16): the groups' configurations at the ends of
/// [0, 1]², and the loader's per-clip invariance vectors, keyed by global sample index.
final class AudioInvarianceTests: XCTestCase {
  func testGroupedConfigurationIsIdentityAtZeroAndTheFullSetAtOne() {
    // v = 0: no transform can apply (the ranges do not matter then), the window is centred.
    let none = WaveAugmentConfig.grouped([0, 0])
    for t in WaveTransform.allCases { XCTAssertEqual(none.probability(t), WaveAugmentConfig.identity.probability(t), "\(t)") }
    let full = WaveAugmentConfig.grouped([1, 1])
    for t: WaveTransform in [.pitchShift, .filter, .whiteNoise, .colouredNoise, .timeStretch, .timeShift, .timeMask, .fade] {
      XCTAssertEqual(full.probability(t), 0.5, "\(t)")
    }
    XCTAssertEqual(full.probability(.crop), 1)
    for t: WaveTransform in [.polarity, .gaussianNoise, .gain, .delay, .reverb] {
      XCTAssertEqual(full.probability(t), 0, "\(t) is in no group")
    }
    // Each entry moves only its own group.
    let spectral = WaveAugmentConfig.grouped([1, 0])
    XCTAssertEqual(spectral.probability(.pitchShift), 0.5)
    XCTAssertEqual(spectral.probability(.timeStretch), 0)
    XCTAssertEqual(spectral.probability(.crop), 0)
    let temporal = WaveAugmentConfig.grouped([0, 0.5])
    XCTAssertEqual(temporal.probability(.pitchShift), 0)
    XCTAssertEqual(temporal.probability(.timeShift), 0.25)
    XCTAssertEqual(temporal.timeStretchRate, 0.9...1.125)
  }

  /// Each clip's v is drawn from its global index (the same rows on 1 and 2 ranks), both views
  /// of a clip carry it, corners draw 0/1 entries, and v = (0, 0) gives two identical views.
  func testLoaderDrawsOneVectorPerClipOnAnyRankCount() throws {
    let ds = try AudioFileDataset.manifest(csv: "\(TinyCorpus.directory)/manifest.csv", sampleRate: 16000)
    let L = 4000
    func load(rank: Int, world: Int, sampling: AugmentSampling) throws -> ([Float], [Float]) {
      let sampler = try DistributedSampler(count: ds.count, globalBatch: 8, rank: rank, worldSize: world, seed: 5)
      let loader = try AudioContrastiveLoader(
        source: ds, sampler: sampler, augment: WaveAugment(config: .clmr, sampleRate: 16000, length: L), seed: 5,
        sampling: sampling)
      XCTAssertEqual(loader.transformColumns, 2)
      var x = [Float](repeating: .nan, count: loader.floatsPerBatch)
      var t = [Float](repeating: .nan, count: loader.rows * 2)
      try loader.load(epoch: 1, batch: 0, into: &x, transforms: &t)
      XCTAssertTrue(x.allSatisfy { $0.isFinite })
      let b = loader.rows / 2
      XCTAssertEqual(Array(t[0..<(2 * b)]), Array(t[(2 * b)...]), "both views of a clip carry its v")
      return (x, t)
    }
    for sampling in [AugmentSampling.amortisedCorners, .amortisedUniform] {
      let (one, t1) = try load(rank: 0, world: 1, sampling: sampling)
      let (a, ta) = try load(rank: 0, world: 2, sampling: sampling)
      let (b, tb) = try load(rank: 1, world: 2, sampling: sampling)
      XCTAssertEqual(Array(ta[0..<8]) + Array(tb[0..<8]), Array(t1[0..<16]), "\(sampling): v by global index")
      XCTAssertEqual(Array(a[0..<(4 * L)]) + Array(b[0..<(4 * L)]), Array(one[0..<(8 * L)]), "\(sampling): view 1 rows")
      let values = Set(t1)
      if sampling == .amortisedCorners {
        XCTAssertEqual(values, [0, 1], "corners: entries 0 or 1, both seen in 8 clips")
      } else {
        XCTAssertTrue(values.allSatisfy { $0 > 0 && $0 < 1 }, "uniform: \(values)")
        XCTAssertGreaterThan(values.count, 8)
      }
      // A clip at the corner (0, 0) gets the identity twice: its two views are equal; any
      // other clip's views differ.
      for r in 0..<8 {
        let v1 = Array(one[(r * L)..<((r + 1) * L)]), v2 = Array(one[((8 + r) * L)..<((9 + r) * L)])
        if t1[2 * r] == 0 && t1[2 * r + 1] == 0 {
          XCTAssertEqual(v1, v2, "\(sampling) clip \(r) at v = 0")
        }
      }
      if sampling == .amortisedCorners {
        XCTAssertTrue((0..<8).contains { t1[2 * $0] == 0 && t1[2 * $0 + 1] == 0 }, "no clip at (0, 0) among 8: \(t1)")
      }
    }
  }
}
