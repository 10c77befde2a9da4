import Data
import Model
import XCTest

@testable import Train

/// The options added for the main job's recipe search reach what they set.
/// `blurProbability` reaches the views' pipeline: the default is SimCLR's pipeline unchanged,
/// 0 and 1 give other views, and strength 0 stays the identity whatever the blur says.
final class RecipeOptionTests: XCTestCase {
  /// The first batch of the views of `config` (one rank, Debian's Fashion-MNIST).
  func firstBatch(_ config: PretrainConfig) throws -> [Float] {
    let source = try ViewSources.make(config, globalBatch: 8, rank: 0, worldSize: 1)
    let out = Storage(source.batchShape.count)
    try source.load(epoch: 0, batch: 0, into: out.data, transforms: nil)
    return Array(UnsafeBufferPointer(start: out.data, count: source.batchShape.count))
  }

  func testBlurProbabilityReachesTheViews() throws {
    var c = PretrainConfig()
    c.augmentStrength = 0.6
    let dataset = try XCTUnwrap(Datasets.open(c) as? FashionMNISTDataset)
    XCTAssertEqual(dataset.augmentConfig, SimCLRAugment.Config(strength: 0.6), "the default is SimCLR's pipeline")
    let standard = try firstBatch(c)
    c.blurProbability = 0
    XCTAssertEqual(try XCTUnwrap(Datasets.open(c) as? FashionMNISTDataset).augmentConfig.blurProbability, 0)
    let never = try firstBatch(c)
    c.blurProbability = 1
    let always = try firstBatch(c)
    XCTAssertTrue(standard != never, "blur 0 gave the default's views")
    XCTAssertTrue(never != always, "blur 1 gave blur 0's views")
    XCTAssertTrue(always == (try firstBatch(c)), "views are a function of the configuration")

    c.augmentStrength = 0
    XCTAssertEqual(try XCTUnwrap(Datasets.open(c) as? FashionMNISTDataset).augmentConfig, .identity)
  }

  /// `cropScale` replaces only the crop's lower area bound of the strength's pipeline, and the
  /// views change with it; 0 keeps the strength's bound.
  func testCropScaleReachesTheViews() throws {
    var c = PretrainConfig()
    c.augmentStrength = 0.6
    let standard = try firstBatch(c)
    c.cropScale = 0.2
    var expected = SimCLRAugment.Config(strength: 0.6)
    expected.cropScale = (0.2, 1)
    XCTAssertEqual(try XCTUnwrap(Datasets.open(c) as? FashionMNISTDataset).augmentConfig, expected)
    let wide = try firstBatch(c)
    XCTAssertTrue(standard != wide, "crop scale 0.2 gave strength 0.6's views")
    c.cropScale = 0
    XCTAssertEqual(try firstBatch(c), standard)
    XCTAssertThrowsError(try PretrainConfig.parse(yaml: "cropScale: 1.5\n", source: "t.yaml")) { e in
      XCTAssertTrue("\(e)".contains("cropScale"), "\(e)")
    }
  }

  func testOutOfRangeIsRefusedNamingTheFlag() throws {
    XCTAssertThrowsError(try PretrainConfig.parse(yaml: "blurProbability: 1.5\n", source: "t.yaml")) { e in
      XCTAssertTrue("\(e)".contains("blurProbability"), "\(e)")
    }
  }

  /// `projectionHidden` sets the width between SimCLR's two head layers; 0 keeps the feature
  /// width (the head of every earlier run).
  func testProjectionHiddenSetsTheHeadsHiddenWidth() throws {
    var c = PretrainConfig()
    c.conv4Width = 32
    c.projectionDim = 24
    for (hidden, width) in [(0, 32), (96, 96)] {
      c.projectionHidden = hidden
      let net = try SimCLRNetwork(config: c, collective: nil)
      XCTAssertEqual(net.arena.parameter(named: "head.0.weight")?.count, width * 32, "hidden \(hidden)")
      XCTAssertEqual(net.arena.parameter(named: "head.3.weight")?.count, 24 * width, "hidden \(hidden)")
      let z = try net.head.forward(Tensor(Storage(4 * 32).data, Shape(4, 32, 1, 1)), training: true)
      XCTAssertEqual(z.shape.perSample, 24)
    }
  }

  /// `projectionLayers` 3 puts a second hidden layer in SimCLR's head (`head.3` becomes the
  /// hidden Linear, `head.6` the output); 2 is the head of every earlier run; 4 is refused
  /// naming the key.
  func testProjectionLayersSetsTheHeadsDepth() throws {
    var c = PretrainConfig()
    c.conv4Width = 32
    c.projectionDim = 24
    c.projectionLayers = 3
    let net = try SimCLRNetwork(config: c, collective: nil)
    XCTAssertEqual(net.head.depth, 3)
    XCTAssertEqual(net.arena.parameter(named: "head.3.weight")?.count, 32 * 32)
    XCTAssertEqual(net.arena.parameter(named: "head.6.weight")?.count, 24 * 32)
    let z = try net.head.forward(Tensor(Storage(4 * 32).data, Shape(4, 32, 1, 1)), training: true)
    XCTAssertEqual(z.shape.perSample, 24)
    c.projectionLayers = 2
    let two = try SimCLRNetwork(config: c, collective: nil)
    XCTAssertNil(two.arena.parameter(named: "head.6.weight"))
    XCTAssertEqual(two.arena.parameter(named: "head.3.weight")?.count, 24 * 32)
    XCTAssertThrowsError(try PretrainConfig.parse(yaml: "projectionLayers: 4\n", source: "t.yaml")) { e in
      XCTAssertTrue("\(e)".contains("projectionLayers"), "\(e)")
    }
  }
}
