import Data
import Model

/// Training data for a self-supervised method: both augmented views of this rank's share of
/// every global batch, keyed by global sample index (DESIGN.md invariant 5).
public protocol ViewBatchSource: AnyObject {
  /// One view of one sample: `Shape(1, C, H, W)`.
  var sampleShape: Shape { get }
  /// Samples of this rank per global batch.
  var localBatch: Int { get }
  var batchesPerEpoch: Int { get }
  /// Columns of the multi-hot "augmentations applied" labels (0: the data reports none).
  var transformCount: Int { get }
  /// What each sample contributes (views, clean input).
  var inputs: MethodInputs { get }
  /// Fills `x` [R·localBatch, C, H, W] (view 1 rows, view 2 rows, clean rows, as `inputs`
  /// has them: R = `inputs.rowsPerSample`) and, when non-nil, `transforms`
  /// [viewCount·localBatch, transformCount].
  func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>?) throws
}

extension ViewBatchSource {
  public var inputs: MethodInputs { .twoViews }
  /// `[R·localBatch, C, H, W]`, R = `inputs.rowsPerSample`.
  public var batchShape: Shape {
    Shape(inputs.rowsPerSample * localBatch, sampleShape.c, sampleShape.h, sampleShape.w)
  }
}

/// Fashion-MNIST (or any `ImageSource`) with the SimCLR augmentations; reports which of
/// them each row received (`ImageAugmentation` columns).
public final class ImageViewSource: ViewBatchSource {
  let loader: ContrastiveBatchLoader
  let sampler: DistributedSampler
  let image: ImageSource

  public init(
    source: ImageSource, sampler: DistributedSampler, augment: SimCLRAugment, seed: UInt64,
    sampling: AugmentSampling = .simclr, reader: ShardReader? = nil, inputs: MethodInputs = .twoViews
  ) throws {
    self.sampler = sampler
    self.inputs = inputs
    image = source
    loader = try ContrastiveBatchLoader(source: source, sampler: sampler, augment: augment, seed: seed)
    loader.sampling = sampling
    loader.reader = reader
    loader.viewCount = inputs.viewCount
    loader.clean = inputs.hasClean
  }

  public let inputs: MethodInputs

  public var sampleShape: Shape { Shape(1, image.channels, image.height, image.width) }
  public var localBatch: Int { sampler.localBatch }
  public var batchesPerEpoch: Int { sampler.batchesPerEpoch }
  public var transformCount: Int { loader.transformCount }

  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>?) throws {
    try loader.load(epoch: epoch, batch: batch, into: x, transforms: transforms)
  }
}

/// The interface the pretraining loop uses: the configuration's dataset (`Datasets.open`), two
/// views with transformation labels.
public enum ViewSources {
  /// - Parameters:
  ///   - globalBatch: samples per global batch (a micro-batch's size under accumulation).
  ///   - reader: how record shards are read (nil: `pread`).
  public static func make(
    _ config: PretrainConfig, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader? = nil
  ) throws -> ViewBatchSource {
    let inputs = config.method.implementation.inputs
    let dataset = try Datasets.open(config)
    if inputs == .labelled {
      return try LabelledViewSource(
        dataset.evaluation(.train), globalBatch: globalBatch, rank: rank, worldSize: worldSize, seed: config.seed)
    }
    return try dataset.views(inputs, globalBatch: globalBatch, rank: rank, worldSize: worldSize, reader: reader)
  }
}
