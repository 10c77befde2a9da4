/// Fills the two-view input batch of contrastive methods on audio (CLMR) for one rank, with
/// the API of `ContrastiveBatchLoader`.
///
/// For global batch `batch` of `epoch`, the rank's `B = sampler.localBatch` clips are read once
/// each and augmented twice into `L`-sample views: rows `0..<B` of the output hold view 1
/// (`KeyedRandom(seed, epoch, sample, .view1)`), rows `B..<2B` view 2 (`.view2`), where
/// `sample` is the GLOBAL sample index (DESIGN invariants 5 and 8). The transforms each view
/// received are kept as multi-hot labels (`transformLabels`), the targets of transformation
/// prediction and MT-SLVR.
///
/// Not thread-safe (it owns the augmenter's scratch); use one per thread.
public final class AudioContrastiveLoader {
  public let source: AudioSource
  public let sampler: DistributedSampler
  public let augment: WaveAugment
  /// Seed of the augmentation streams.
  public let seed: UInt64
  /// The transforms of each row of the last `load`, `[2·B_local]`.
  public private(set) var lastTransforms: [WaveTransformSet] = []

  /// - Throws: `DataError.invalidArgument` if the sampler covers more clips than the source
  ///   holds or the augmenter's sample rate is not the source's.
  public init(source: AudioSource, sampler: DistributedSampler, augment: WaveAugment, seed: UInt64) throws {
    guard sampler.count <= source.count else {
      throw DataError.invalidArgument(
        "AudioContrastiveLoader: sampler covers \(sampler.count) clips, the source holds \(source.count)")
    }
    guard augment.sampleRate == source.sampleRate else {
      throw DataError.invalidArgument(
        "AudioContrastiveLoader: augmenter at \(augment.sampleRate) Hz, source at \(source.sampleRate) Hz")
    }
    self.source = source
    self.sampler = sampler
    self.augment = augment
    self.seed = seed
  }

  /// Samples per view `L`.
  public var length: Int { augment.length }
  /// Rows of the output batch: `2·B_local`.
  public var rows: Int { 2 * sampler.localBatch }
  /// Floats `load` writes: `2·B_local·L`.
  public var floatsPerBatch: Int { rows * length }
  /// Columns of the multi-hot transform labels: `WaveTransform.allCases.count`.
  public static var transformCount: Int { WaveTransform.allCases.count }

  /// Writes both views of this rank's part of a global batch into `x`, shaped
  /// [2·B_local, 1, 1, L]; records the transforms in `lastTransforms`.
  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>) throws {
    let indices = try sampler.localIndices(epoch: epoch, batch: batch)
    let b = indices.count, L = length
    var transforms = [WaveTransformSet](repeating: [], count: 2 * b)
    for (row, sample) in indices.enumerated() {
      let clip = try source.samples(sample)
      clip.withUnsafeBufferPointer { c in
        var rng1 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view1)
        transforms[row] = augment.apply(c.baseAddress!, count: c.count, into: x + row * L, rng: &rng1)
        var rng2 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view2)
        transforms[b + row] = augment.apply(c.baseAddress!, count: c.count, into: x + (b + row) * L, rng: &rng2)
      }
    }
    lastTransforms = transforms
  }

  /// `load`, also writing the multi-hot transform labels into `transforms`
  /// [2·B_local, `transformCount`] (view 1 rows, then view 2 rows).
  public func load(
    epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>
  ) throws {
    try load(epoch: epoch, batch: batch, into: x)
    let t = Self.transformCount
    for (row, set) in lastTransforms.enumerated() { set.writeMultiHot(into: transforms + row * t) }
  }

  /// Labels of this rank's clips of a global batch in `slot` (for monitoring; SSL ignores them).
  public func labels(epoch: Int, batch: Int, slot: Int = 0) throws -> [Int] {
    try sampler.localIndices(epoch: epoch, batch: batch).map { source.label($0, slot: slot) }
  }
}
