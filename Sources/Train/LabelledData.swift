import Data
import Model

/// Training data for supervised methods (`MethodInputs.labelled`): the clean inputs of this
/// rank's share of every global batch of a labelled set (any `EvalSource`: images, the
/// MultiFashion canvases, log-mel or raw audio clips) and each sample's class in every label
/// slot. The order is the sampler's epoch permutation, keyed by seed and epoch (DESIGN.md
/// invariant 6); no augmentation.
public final class LabelledViewSource: ViewBatchSource {
  public let source: EvalSource
  public let sampler: DistributedSampler

  /// - Throws: `DataError` when the global batch does not fit the set or the ranks.
  public init(_ source: EvalSource, globalBatch: Int, rank: Int, worldSize: Int, seed: UInt64) throws {
    self.source = source
    sampler = try DistributedSampler(
      count: source.count, globalBatch: globalBatch, rank: rank, worldSize: worldSize, seed: seed)
  }

  public var inputs: MethodInputs { .labelled }
  public var sampleShape: Shape {
    let s = source.inputShape
    return Shape(1, s.channels, s.height, s.width)
  }
  public var localBatch: Int { sampler.localBatch }
  public var batchesPerEpoch: Int { sampler.batchesPerEpoch }
  /// One column per label slot.
  public var transformCount: Int { source.labelSlots.count }

  /// Fills `x` [B_local, C, H, W] and `transforms` [B_local, slots] with the classes.
  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>?)
    throws
  {
    let indices = try sampler.localIndices(epoch: epoch, batch: batch)
    try source.load(indices: indices, into: x)
    guard let transforms else { return }
    let slots = transformCount
    for (row, i) in indices.enumerated() {
      for s in 0..<slots { transforms[row * slots + s] = Float(source.label(i, slot: s)) }
    }
  }
}

/// The clean MultiFashion canvases of a split with both label slots (`left`, `right`),
/// normalised with Fashion-MNIST's statistics.
public final class MultiFashionEvalSource: EvalSource {
  public let images: MultiFashion
  private let loader: EvalBatchLoader

  public init(_ images: MultiFashion) {
    self.images = images
    loader = EvalBatchLoader(source: images, classNames: FashionMNIST.classNames)
  }

  public var count: Int { images.count }
  public var inputShape: InputShape { loader.inputShape }
  public var labelSlots: [LabelSlot] {
    MultiFashion.slotNames.map { LabelSlot(name: $0, classNames: FashionMNIST.classNames) }
  }
  public func label(_ i: Int, slot: Int) -> Int { images.label(i, slot: slot) }
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    try loader.load(indices: indices, into: x)
  }
}

/// MultiFashion (`--data multi-fashion`): train canvases from Fashion-MNIST's 60 000 training
/// items, test canvases from its 10 000 test items, paired by the seed; for supervised methods.
public struct MultiFashionDataset: SSLDataset {
  public var directory: String
  public var seed: UInt64

  public var sampleShape: Shape { Shape(1, 1, MultiFashion.size, MultiFashion.size) }
  public var labelSlots: [LabelSlot] {
    MultiFashion.slotNames.map { LabelSlot(name: $0, classNames: FashionMNIST.classNames) }
  }
  public var evalBatch: Int { 256 }
  public var probeLayers: [FeatureLayer] { FeatureLayer.allCases }
  public var reportSlots: [String] { MultiFashion.slotNames }
  public var rawInputName: String? { "raw pixels" }
  public var fewShotSplit: EvalSplit { .test }

  /// The canvases of a split (`.all` is the training split's: the two splits are paired
  /// separately and cannot be one set).
  public func images(_ split: EvalSplit) throws -> MultiFashion {
    let s: FashionMNIST.Split = split == .test ? .test : .train
    return try MultiFashion(base: FashionMNIST.load(split: s, directory: directory), seed: seed, split: s)
  }

  /// Self-supervised views of MultiFashion are not offered: it is a supervised benchmark.
  public func views(
    _ inputs: MethodInputs, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader?
  ) throws -> ViewBatchSource {
    throw ConfigError(message: "data multi-fashion is a supervised multi-task benchmark: use --method supervised (parallax mtl)")
  }

  public func evaluation(_ split: EvalSplit) throws -> EvalSource { MultiFashionEvalSource(try images(split)) }
}
