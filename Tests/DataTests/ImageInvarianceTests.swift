import XCTest

@testable import Data

/// Amortised invariance learning's data side: per-group augmentation strengths and the
/// per-sample invariance vector, keyed by sample (not by rank).
final class ImageInvarianceTests: XCTestCase {
  /// v = 0 is the clean image, v = 1 SimCLR's pipeline at strength 1; each group changes only
  /// its own parameters.
  func testGroupedConfigEndpoints() throws {
    let base = SimCLRAugment.Config()
    XCTAssertEqual(base.grouped([1, 1]), SimCLRAugment.Config(strength: 1))
    let zero = base.grouped([0, 0])
    let image = Array(try TestSupport.testSplit.subset(0..<1).image(0))
    var clean = [Float](repeating: 0, count: 784)
    SimCLRAugment.normalize(image, count: 784, into: &clean)
    let augment = SimCLRAugment(config: zero)
    for sample in 0..<20 {
      var rng = KeyedRandom(seed: 1, epoch: 0, sample: sample, purpose: .view1)
      var view = [Float](repeating: .nan, count: 784)
      let applied = augment.apply(image, height: 28, width: 28, into: &view, rng: &rng)
      XCTAssertFalse(applied.contains(.crop) || applied.contains(.flip) || applied.contains(.blur), "v = 0 applied \(applied)")
      for i in 0..<784 { XCTAssertEqual(view[i], clean[i], accuracy: 1e-5, "v = 0 must give the clean image (pixel \(i))") }
    }
    let appearanceOnly = base.grouped([1, 0])
    XCTAssertEqual(appearanceOnly.cropScale.lower, 1)
    XCTAssertEqual(appearanceOnly.flipProbability, 0)
    XCTAssertEqual(appearanceOnly.brightness, 0.4)
    let spatialOnly = base.grouped([0, 1])
    XCTAssertEqual(spatialOnly.brightness, 0)
    XCTAssertEqual(spatialOnly.blurProbability, 0)
    XCTAssertEqual(spatialOnly.noiseStd, 0)
    XCTAssertEqual(spatialOnly.cropScale.lower, 0.2, accuracy: 1e-6)
  }

  func load(_ source: ImageSource, sampling: AugmentSampling, rank: Int, world: Int) throws -> (x: [Float], v: [Float]) {
    let sampler = try DistributedSampler(count: source.count, globalBatch: 8, rank: rank, worldSize: world, seed: 4)
    let loader = try ContrastiveBatchLoader(source: source, sampler: sampler, augment: SimCLRAugment(), seed: 17)
    loader.sampling = sampling
    XCTAssertEqual(loader.transformCount, 2)
    var x = [Float](repeating: .nan, count: loader.floatsPerBatch)
    var v = [Float](repeating: .nan, count: loader.rows * 2)
    try x.withUnsafeMutableBufferPointer { xp in
      try v.withUnsafeMutableBufferPointer { try loader.load(epoch: 1, batch: 3, into: xp.baseAddress!, transforms: $0.baseAddress!) }
    }
    return (x, v)
  }

  /// Each sample's v (both views' rows), and so its views, are the same at 1 and 2 ranks;
  /// corners are 0/1, uniform draws lie inside; samples draw different vectors.
  func testInvarianceVectorKeyedBySample() throws {
    let source = try TestSupport.testSplit.subset(0..<100)
    let n = 784
    for sampling in [AugmentSampling.amortisedCorners, .amortisedUniform] {
      let whole = try load(source, sampling: sampling, rank: 0, world: 1)
      let half = try load(source, sampling: sampling, rank: 1, world: 2)
      for k in 0..<4 {
        XCTAssertEqual(Array(half.v[(2 * k)..<(2 * k + 2)]), Array(whole.v[(2 * (4 + k))..<(2 * (4 + k) + 2)]), "\(sampling) v row \(k)")
        XCTAssertEqual(half.x[k * n..<(k + 1) * n], whole.x[(4 + k) * n..<(5 + k) * n], "\(sampling) view 1 row \(k)")
        XCTAssertEqual(half.x[(4 + k) * n..<(5 + k) * n], whole.x[(12 + k) * n..<(13 + k) * n], "\(sampling) view 2 row \(k)")
      }
      for row in 0..<8 {
        XCTAssertEqual(Array(whole.v[(2 * row)..<(2 * row + 2)]), Array(whole.v[(2 * (8 + row))..<(2 * (8 + row) + 2)]), "both views share v")
      }
      let vs = Set(stride(from: 0, to: 16, by: 2).map { [whole.v[$0], whole.v[$0 + 1]] })
      XCTAssertGreaterThan(vs.count, 1, "\(sampling): every sample drew the same v")
      if sampling == .amortisedCorners {
        XCTAssertTrue(whole.v.allSatisfy { $0 == 0 || $0 == 1 }, "\(whole.v)")
      } else {
        XCTAssertTrue(whole.v.allSatisfy { $0 > 0 && $0 < 1 && $0 != 0.5 }, "\(whole.v)")
      }
    }
  }
}
