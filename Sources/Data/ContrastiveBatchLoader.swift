/// Fills the two-view input batch of contrastive methods (SimCLR and kin) for one rank.
///
/// For global batch `batch` of `epoch`, the rank's `B = sampler.localBatch` samples are read
/// once each and augmented twice: rows `0..<B` of the output hold view 1
/// (`KeyedRandom(seed, epoch, sample, .view1)`), rows `B..<2B` view 2 (`.view2`), where `sample`
/// is the GLOBAL sample index. A sample's views are therefore the same whatever the rank count
/// (DESIGN invariants 5 and 8).
///
/// Not thread-safe (it owns the augmenter's scratch and a pixel buffer); use one per thread.
public final class ContrastiveBatchLoader {
  public let source: ImageSource
  public let sampler: DistributedSampler
  public let augment: SimCLRAugment
  /// Seed of the augmentation streams.
  public let seed: UInt64
  /// How each view's augmentations are chosen.
  public var sampling: AugmentSampling = .simclr
  /// How the batch's records are read (nil: `pread`; `Dist.MPIShardReader` for MPI-IO).
  public var reader: ShardReader?
  /// Augmented views per sample (0, 1 or 2; 2 for contrastive methods).
  public var viewCount = 2
  /// Whether the clean (un-augmented, normalised) image of each sample follows the views
  /// (the autoencoders' target).
  public var clean = false
  /// [B, C, H, W] bytes of the rank's samples of the batch being augmented.
  private var pixels: UnsafeMutablePointer<UInt8>
  private var pixelCapacity: Int

  /// - Throws: `DataError.invalidArgument` if the source has other than 1 or 3 channels or is
  ///   smaller than the sampler's data set.
  public init(source: ImageSource, sampler: DistributedSampler, augment: SimCLRAugment, seed: UInt64) throws {
    guard source.channels == 1 || source.channels == 3 else {
      throw DataError.invalidArgument(
        "ContrastiveBatchLoader: SimCLRAugment takes 1- or 3-channel images, the source has \(source.channels)")
    }
    guard sampler.count <= source.count else {
      throw DataError.invalidArgument(
        "ContrastiveBatchLoader: sampler covers \(sampler.count) samples, the source holds \(source.count)")
    }
    self.source = source
    self.sampler = sampler
    self.augment = augment
    self.seed = seed
    pixelCapacity = sampler.localBatch * source.pixelsPerImage
    pixels = .allocate(capacity: max(1, pixelCapacity))
  }

  deinit { pixels.deallocate() }

  /// Rows of the output batch: `(viewCount + clean)·B_local`.
  public var rows: Int { (viewCount + (clean ? 1 : 0)) * sampler.localBatch }
  /// Floats `load` writes: `2·B_local·C·H·W`.
  public var floatsPerBatch: Int { rows * source.pixelsPerImage }
  /// Columns of the augmentation labels (`ImageAugmentationSet.columns(channels:)`); with
  /// amortised sampling the k = `ImageInvarianceGroup.allCases.count` values of each row's
  /// invariance vector instead.
  public var transformCount: Int {
    sampling.isAmortised ? ImageInvarianceGroup.allCases.count : ImageAugmentationSet.columns(channels: source.channels)
  }
  /// The augmenter whose configuration amortised sampling sets per sample (`Config.grouped`
  /// of `augment.config`).
  private lazy var grouped = augment.copy()

  /// Writes both views of this rank's part of a global batch into `x`, shaped
  /// [2·B_local, C, H, W], and, when non-nil, the multi-hot labels of the augmentations each
  /// row received into `transforms` [2·B_local, `transformCount`].
  ///
  /// With `.amortisedCorners`/`.amortisedUniform` sampling each sample draws its invariance
  /// vector v from `KeyedRandom(seed, epoch, sample, .invariance)` (`ImageInvarianceGroup.draw`),
  /// both views are made with `Config.grouped(v)` of the augmenter's configuration, and the rows
  /// of `transforms` (both views' rows) hold v.
  ///
  /// With `.mtslvr` sampling the augmentations of a sample are drawn once from
  /// `KeyedRandom(seed, epoch, sample, .transform)` and both views share them (and the label),
  /// each view drawing its own parameters from its `.view1`/`.view2` stream.
  public func load(
    epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>,
    transforms: UnsafeMutablePointer<Float>? = nil
  ) throws {
    let indices = try sampler.localIndices(epoch: epoch, batch: batch)
    let c = source.channels, h = source.height, w = source.width, n = c * h * w
    let b = indices.count
    let t = transformCount
    let size = source.pixelsPerImage
    if b * size > pixelCapacity {
      pixels.deallocate()
      pixelCapacity = b * size
      pixels = .allocate(capacity: pixelCapacity)
    }
    // One batch read (collective under MPI-IO), then the augmentations from memory.
    try source.pixels(batch: indices, into: pixels, reader: reader)
    for (row, sample) in indices.enumerated() {
      let pixels = self.pixels + row * size
      if clean {
        let plane = h * w
        for ch in 0..<c {
          let (mean, std) = augment.config.normalization(channel: ch, of: c)
          SimCLRAugment.normalize(
            pixels + ch * plane, count: plane, into: x + (viewCount * b + row) * n + ch * plane, mean: mean, std: std)
        }
      }
      guard viewCount > 0 else { continue }
      var rng1 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view1)
      var rng2 = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .view2)
      let a1: ImageAugmentationSet
      let a2: ImageAugmentationSet
      switch sampling {
      case .simclr:
        a1 = augment.apply(pixels, channels: c, height: h, width: w, into: x + row * n, rng: &rng1)
        a2 = viewCount < 2 ? [] : augment.apply(pixels, channels: c, height: h, width: w, into: x + (b + row) * n, rng: &rng2)
      case .mtslvr:
        var choice = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .transform)
        let chosen = SimCLRAugment.sampleAugmentations(rng: &choice, channels: c)
        a1 = augment.apply(pixels, channels: c, height: h, width: w, into: x + row * n, chosen: chosen, rng: &rng1)
        a2 = viewCount < 2
          ? []
          : augment.apply(pixels, channels: c, height: h, width: w, into: x + (b + row) * n, chosen: chosen, rng: &rng2)
      case .amortisedCorners, .amortisedUniform:
        var draw = KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: .invariance)
        let v = ImageInvarianceGroup.draw(rng: &draw, corners: sampling == .amortisedCorners)
        grouped.config = augment.config.grouped(v)
        grouped.apply(pixels, channels: c, height: h, width: w, into: x + row * n, rng: &rng1)
        if viewCount == 2 { grouped.apply(pixels, channels: c, height: h, width: w, into: x + (b + row) * n, rng: &rng2) }
        if let transforms {
          for (g, value) in v.enumerated() {
            transforms[row * t + g] = value
            if viewCount == 2 { transforms[(b + row) * t + g] = value }
          }
        }
        continue
      }
      if let transforms {
        a1.writeMultiHot(into: transforms + row * t, channels: c)
        if viewCount == 2 { a2.writeMultiHot(into: transforms + (b + row) * t, channels: c) }
      }
    }
  }

  /// The labels of this rank's samples of a global batch (for monitoring; SSL ignores them).
  public func labels(epoch: Int, batch: Int) throws -> [Int] {
    try sampler.localIndices(epoch: epoch, batch: batch).map { source.label($0) }
  }
}

/// How the augmentations of a view are chosen.
public enum AugmentSampling: String, Sendable, CaseIterable {
  /// SimCLR's pipeline: each step with its own probability, independently per view.
  case simclr
  /// MT-SLVR's: per sample k ~ U{1…n} distinct augmentations in random order, shared by both
  /// views (each with its own parameters), so both views carry the same label.
  case mtslvr
  /// Amortised invariance learning: per sample an invariance vector v at a corner of
  /// [0, 1]^k (the paper's pretraining), each group's augmentations scaled by its entry.
  case amortisedCorners = "amortised-corners"
  /// The same with v uniform in [0, 1]^k.
  case amortisedUniform = "amortised-uniform"

  /// Whether views carry an invariance vector (the `transforms` rows hold v).
  public var isAmortised: Bool { self == .amortisedCorners || self == .amortisedUniform }
}
