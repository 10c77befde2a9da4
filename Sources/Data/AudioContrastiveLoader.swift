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
/// With `.amortisedCorners`/`.amortisedUniform` sampling (amortised invariance learning) each
/// clip draws its invariance vector v from `KeyedRandom(seed, epoch, sample, .invariance)`
/// (`AudioInvarianceGroup.draw`), both views are made with `WaveAugmentConfig.grouped(v)` (the
/// augmenter passed in is replaced by one built for `grouped([1, 1])`), and the transform rows
/// hold v instead of the multi-hot labels. Other samplings draw each view's transforms
/// independently with the augmenter's own probabilities.
///
/// Not thread-safe (it owns the augmenter's scratch); use one per thread.
public final class AudioContrastiveLoader {
  public let source: AudioSource
  public let sampler: DistributedSampler
  public let augment: WaveAugment
  /// Seed of the augmentation streams.
  public let seed: UInt64
  public let sampling: AugmentSampling
  /// The transforms of each row of the last `load`, `[2·B_local]`.
  public private(set) var lastTransforms: [WaveTransformSet] = []
  /// The invariance vector of each clip of the last `load` (amortised sampling), `[B_local]`.
  public private(set) var lastInvariance: [[Float]] = []

  /// - Throws: `DataError.invalidArgument` if the sampler covers more clips than the source
  ///   holds or the augmenter's sample rate is not the source's.
  public init(
    source: AudioSource, sampler: DistributedSampler, augment: WaveAugment, seed: UInt64,
    sampling: AugmentSampling = .simclr
  ) throws {
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
    self.augment =
      sampling.isAmortised
      ? WaveAugment(config: .grouped(AudioInvarianceGroup.allCases.map { _ in 1 }), sampleRate: augment.sampleRate, length: augment.length)
      : augment
    self.seed = seed
    self.sampling = sampling
  }

  /// Samples per view `L`.
  public var length: Int { augment.length }
  /// Rows of the output batch: `2·B_local`.
  public var rows: Int { 2 * sampler.localBatch }
  /// Floats `load` writes: `2·B_local·L`.
  public var floatsPerBatch: Int { rows * length }
  /// Columns of the multi-hot transform labels: `WaveTransform.allCases.count`.
  public static var transformCount: Int { WaveTransform.allCases.count }
  /// Columns of this loader's transform rows: the multi-hot labels, or with amortised sampling
  /// the k = `AudioInvarianceGroup.allCases.count` values of v.
  public var transformColumns: Int { sampling.isAmortised ? AudioInvarianceGroup.allCases.count : Self.transformCount }

  /// Writes both views of this rank's part of a global batch into `x`, shaped
  /// [2·B_local, 1, 1, L]; records the transforms in `lastTransforms`.
  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>) throws {
    let indices = try sampler.localIndices(epoch: epoch, batch: batch)
    let b = indices.count, L = length
    var transforms = [WaveTransformSet](repeating: [], count: 2 * b)
    lastInvariance = []
    for (row, sample) in indices.enumerated() {
      let clip = try source.samples(sample)
      if sampling.isAmortised {
        var draw = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .invariance)
        let v = AudioInvarianceGroup.draw(rng: &draw, corners: sampling == .amortisedCorners)
        augment.config = .grouped(v)
        lastInvariance.append(v)
      }
      clip.withUnsafeBufferPointer { c in
        var rng1 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view1)
        transforms[row] = augment.apply(c.baseAddress!, count: c.count, into: x + row * L, rng: &rng1)
        var rng2 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view2)
        transforms[b + row] = augment.apply(c.baseAddress!, count: c.count, into: x + (b + row) * L, rng: &rng2)
      }
    }
    lastTransforms = transforms
  }

  /// `load`, also writing the transform rows into `transforms` [2·B_local, `transformColumns`]
  /// (view 1 rows, then view 2 rows): the multi-hot labels, or each clip's v in both its rows.
  public func load(
    epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>
  ) throws {
    try load(epoch: epoch, batch: batch, into: x)
    let t = transformColumns
    if sampling.isAmortised {
      let b = lastInvariance.count
      for (row, v) in lastInvariance.enumerated() {
        for (g, value) in v.enumerated() {
          transforms[row * t + g] = value
          transforms[(b + row) * t + g] = value
        }
      }
      return
    }
    for (row, set) in lastTransforms.enumerated() { set.writeMultiHot(into: transforms + row * t) }
  }

  /// Labels of this rank's clips of a global batch in `slot` (for monitoring; SSL ignores them).
  public func labels(epoch: Int, batch: Int, slot: Int = 0) throws -> [Int] {
    try sampler.localIndices(epoch: epoch, batch: batch).map { source.label($0, slot: slot) }
  }
}
