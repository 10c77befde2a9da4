import Data
import Model

/// Which part of a dataset an evaluation reads.
public enum EvalSplit: Sendable {
  /// The part pretraining sees (probes fit on it).
  case train
  /// The held-out part (probes score on it).
  case test
  /// Everything (few-shot tasks on audio draw from all clips).
  case all
}

/// One dataset, images or audio, as pretraining and evaluation see it: training views for this
/// rank's part of each global batch, clean evaluation inputs of a split, and named label slots.
/// `Datasets.open` is the one place a configuration becomes one.
public protocol SSLDataset {
  /// One model input, `Shape(1, C, H, W)`.
  var sampleShape: Shape { get }
  /// The label columns (`class`; `word`, `language`, `voice`, `gender`; tags).
  var labelSlots: [LabelSlot] { get }
  /// Samples per forward pass when extracting features.
  var evalBatch: Int { get }
  /// The training views of this rank's share of every global batch, keyed by global sample
  /// index (DESIGN.md invariant 6).
  /// - Parameter reader: how record shards are read (nil: `pread`); datasets without record
  ///   shards ignore it.
  func views(_ inputs: MethodInputs, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader?) throws
    -> ViewBatchSource
  /// The clean inputs of a split, in sample order.
  func evaluation(_ split: EvalSplit) throws -> EvalSource

  /// The feature layers probes read unless told otherwise.
  var probeLayers: [FeatureLayer] { get }
  /// The label slots `--probe` reports when the data has them (else every slot).
  var reportSlots: [String] { get }
  /// The name of the raw-input baseline row of the probe table, or nil when the raw input is
  /// too large to probe.
  var rawInputName: String? { get }
  /// The split few-shot tasks draw from.
  var fewShotSplit: EvalSplit { get }
}

/// Fashion-MNIST: packed once into a cached record shard and read by offset.
public struct FashionMNISTDataset: SSLDataset {
  public var directory: String
  public var augmentStrength: Float
  public var blurProbability: Float = 0.5
  /// The crop's smallest area share (0: the strength's).
  public var cropScale: Float = 0
  public var sampling: AugmentSampling
  public var seed: UInt64

  /// The views' augmentation: SimCLR's at `augmentStrength` with `blurProbability` and `cropScale`.
  public var augmentConfig: SimCLRAugment.Config {
    SimCLRAugment.Config.views(strength: augmentStrength, blurProbability: blurProbability, cropScale: cropScale)
  }

  public var sampleShape: Shape { Shape(1, 1, 28, 28) }
  public var labelSlots: [LabelSlot] { [LabelSlot(name: "class", classNames: FashionMNIST.classNames)] }
  public var evalBatch: Int { 256 }
  /// Pooled 64-d and pre-pool 576-d for conv4.
  public var probeLayers: [FeatureLayer] { FeatureLayer.allCases }
  public var reportSlots: [String] { ["class"] }
  public var rawInputName: String? { "raw pixels" }
  /// The test split: its classes are balanced and it is not what probes fit on.
  public var fewShotSplit: EvalSplit { .test }

  public func views(
    _ inputs: MethodInputs, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader?
  ) throws -> ViewBatchSource {
    let train = try FashionMNIST.shard(split: .train, directory: directory)
    let sampler = try DistributedSampler(
      count: train.count, globalBatch: globalBatch, rank: rank, worldSize: worldSize, seed: seed)
    return try ImageViewSource(
      source: train, sampler: sampler, augment: SimCLRAugment(config: augmentConfig), seed: seed, sampling: sampling, reader: reader, inputs: inputs)
  }

  public func evaluation(_ split: EvalSplit) throws -> EvalSource {
    EvalBatchLoader(
      source: try FashionMNIST.shard(split: split == .train ? .train : .test, directory: directory),
      classNames: FashionMNIST.classNames)
  }
}

/// A packed image set (`parallax data pack --images`): record shards read by offset, its
/// own per-channel statistics and label slots; one or three channels.
public struct ImageSetDataset: SSLDataset {
  public let images: ImageSetSource
  public var augmentStrength: Float
  public var blurProbability: Float
  public var cropScale: Float
  public var sampling: AugmentSampling
  public var seed: UInt64

  public init(
    directory: String, augmentStrength: Float, blurProbability: Float = 0.5, cropScale: Float = 0,
    sampling: AugmentSampling, seed: UInt64
  ) throws {
    images = try ImageSetSource(directory: directory)
    self.augmentStrength = augmentStrength
    self.blurProbability = blurProbability
    self.cropScale = cropScale
    self.sampling = sampling
    self.seed = seed
  }

  public var sampleShape: Shape { Shape(1, images.channels, images.height, images.width) }
  public var labelSlots: [LabelSlot] { zip(images.info.labelNames, images.info.classNames).map { LabelSlot(name: $0, classNames: $1) } }
  public var evalBatch: Int { 256 }
  public var probeLayers: [FeatureLayer] { FeatureLayer.allCases }
  public var reportSlots: [String] { images.info.labelNames }
  public var rawInputName: String? { images.pixelsPerImage <= 4096 ? "raw pixels" : nil }
  public var fewShotSplit: EvalSplit { .test }

  /// The fixed 80/20 split by index (`AudioData.split`'s rule): pretraining and probes fit on
  /// the first, probes score on the second.
  public func indices(_ split: EvalSplit) -> [Int] {
    let (train, test) = AudioData.split(count: images.count)
    switch split {
    case .train: return train
    case .test: return test
    case .all: return Array(0..<images.count)
    }
  }

  public func views(
    _ inputs: MethodInputs, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader?
  ) throws -> ViewBatchSource {
    let train = try ImageSubset(images, indices: indices(.train))
    let sampler = try DistributedSampler(
      count: train.count, globalBatch: globalBatch, rank: rank, worldSize: worldSize, seed: seed)
    var config = SimCLRAugment.Config.views(strength: augmentStrength, blurProbability: blurProbability, cropScale: cropScale)
    if images.channels == 3 {
      config.rgbMean = images.info.mean
      config.rgbStd = images.info.std
    } else {
      config.mean = images.info.mean[0]
      config.std = images.info.std[0]
    }
    return try ImageViewSource(
      source: train, sampler: sampler, augment: SimCLRAugment(config: config), seed: seed, sampling: sampling,
      reader: reader, inputs: inputs)
  }

  public func evaluation(_ split: EvalSplit) throws -> EvalSource {
    try EvalBatchLoader(set: images, indices: indices(split))
  }
}

/// An audio corpus (spoken digits, a manifest, a folder per class, an audio shard) with its
/// fixed 80/20 split and front end.
public struct AudioDataset: SSLDataset {
  public var config: PretrainConfig
  /// Every clip of the corpus, opened once.
  public let all: AudioSource

  public init(config: PretrainConfig) throws {
    self.config = config
    all = try AudioData.open(config)
  }

  public var sampleShape: Shape { config.sampleShape }
  public var labelSlots: [LabelSlot] { zip(all.labelNames, all.classNames).map { LabelSlot(name: $0, classNames: $1) } }
  public var evalBatch: Int { 8 }
  /// Pooled only: the pre-pool maps of audio encoders are large and probing them is slow.
  public var probeLayers: [FeatureLayer] { [.pooled] }
  public var reportSlots: [String] { ["word", "language"] }
  /// Tens of thousands of samples per clip: a probe on the raw waveform is no baseline.
  public var rawInputName: String? { nil }
  /// Every clip (MT-SLVR's protocol): tasks need many examples per class.
  public var fewShotSplit: EvalSplit { .all }

  /// The clips of a split (`AudioData.split`: fixed by clip index).
  public func clips(_ split: EvalSplit) -> AudioSource {
    let (train, test) = AudioData.split(count: all.count)
    switch split {
    case .train: return AudioSubset(all, indices: train)
    case .test: return AudioSubset(all, indices: test)
    case .all: return all
    }
  }

  /// Audio shards are read with `pread` (`reader` is not used yet).
  public func views(
    _ inputs: MethodInputs, globalBatch: Int, rank: Int, worldSize: Int, reader: ShardReader?
  ) throws -> ViewBatchSource {
    guard inputs == .twoViews else { throw ConfigError(message: "audio builds two views per sample, not \(inputs)") }
    let train = clips(.train)
    let sampler = try DistributedSampler(
      count: train.count, globalBatch: globalBatch, rank: rank, worldSize: worldSize, seed: config.seed)
    let augment = WaveAugment(
      config: try AudioData.augmentConfig(config), sampleRate: config.sampleRate, length: config.resolvedAudioLength)
    let sampling = config.resolvedAugmentSampling
    return try AudioViewSource(
      source: train, sampler: sampler, augment: augment, seed: config.seed, mel: AudioData.melFrontEnd(config),
      sampling: sampling.isAmortised ? sampling : .simclr)
  }

  public func evaluation(_ split: EvalSplit) throws -> EvalSource {
    AudioEvalLoader(source: clips(split), length: config.resolvedAudioLength, mel: AudioData.melFrontEnd(config))
  }
}

public enum Datasets {
  /// The configuration's dataset. The only place the pretraining configuration's data fields
  /// (data, data-dir, augmentation, audio front end) are read.
  public static func open(_ config: PretrainConfig) throws -> SSLDataset {
    switch config.data {
    case .fashionMNIST:
      return FashionMNISTDataset(
        directory: config.dataDir, augmentStrength: config.augmentStrength, blurProbability: config.blurProbability,
        cropScale: config.cropScale,
        sampling: config.resolvedAugmentSampling, seed: config.seed)
    case .images:
      return try ImageSetDataset(
        directory: config.dataDir, augmentStrength: config.augmentStrength, blurProbability: config.blurProbability,
        cropScale: config.cropScale,
        sampling: config.resolvedAugmentSampling, seed: config.seed)
    case .spokenDigits, .audioManifest, .audioFolder:
      return try AudioDataset(config: config)
    case .multiFashion:
      return MultiFashionDataset(directory: config.dataDir, seed: config.seed)
    }
  }
}

extension SimCLRAugment.Config {
  /// The pretraining views' pipeline: SimCLR's at `strength` with the blur drawn with
  /// `blurProbability` and, when `cropScale` > 0, crops keeping at least that share of the area;
  /// strength 0 is no augmentation at all (`identity`, blur and crop included).
  static func views(strength: Float, blurProbability: Float, cropScale: Float = 0) -> SimCLRAugment.Config {
    guard strength > 0 else { return .identity }
    var c = SimCLRAugment.Config(strength: strength)
    c.blurProbability = blurProbability
    if cropScale > 0 { c.cropScale.lower = cropScale }
    return c
  }
}
