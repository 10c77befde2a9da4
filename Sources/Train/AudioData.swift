import Data
import Foundation
import Model

/// The clips of an `AudioSource` at `indices` (a split), in that order, as an `AudioSource`.
public final class AudioSubset: AudioSource {
  public let base: AudioSource
  public let indices: [Int]

  public init(_ base: AudioSource, indices: [Int]) {
    self.base = base
    self.indices = indices
  }

  public var count: Int { indices.count }
  public var sampleRate: Int { base.sampleRate }
  public var labelNames: [String] { base.labelNames }
  public var classNames: [[String]] { base.classNames }
  public func label(_ i: Int, slot: Int) -> Int { base.label(indices[i], slot: slot) }
  public func samples(_ i: Int) throws -> [Float] { try base.samples(indices[i]) }
}

/// How a pretraining configuration reads audio: the corpus, its train/test split and the
/// front end. Pretraining, `--probe` and `parallax eval` all go through here, so they agree on
/// which clips are held out.
public enum AudioData {
  /// Opens the configuration's audio:
  ///
  /// - `spoken-digits`, `audio-manifest`: `dataDir` is a folder holding `manifest.csv`
  ///   (what `parallax data spoken-digits` writes), a CSV manifest, or an audio shard
  ///   (`parallax data pack`, with its `.json` sidecar);
  /// - `audio-folder`: `dataDir` has one sub-folder of audio files per class.
  ///
  /// Files are decoded and resampled to `config.sampleRate`; a shard must already be at that
  /// rate.
  public static func open(_ config: PretrainConfig) throws -> AudioSource {
    let path = config.dataDir
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
      throw ConfigError(
        message: "data-dir \(path) does not exist (make a corpus with `parallax data spoken-digits --out DIR`)")
    }
    let source: AudioSource
    if config.data == .audioFolder {
      guard isDir.boolValue else { throw ConfigError(message: "audio-folder: data-dir \(path) is not a folder") }
      source = try AudioFileDataset.folderPerClass(root: path, sampleRate: config.sampleRate)
    } else if isDir.boolValue {
      let manifest = path + "/manifest.csv"
      guard FileManager.default.fileExists(atPath: manifest) else {
        throw ConfigError(message: "\(config.data.rawValue): no manifest.csv in \(path)")
      }
      source = try AudioFileDataset.manifest(csv: manifest, sampleRate: config.sampleRate)
    } else if path.hasSuffix(".csv") {
      source = try AudioFileDataset.manifest(csv: path, sampleRate: config.sampleRate)
    } else {
      source = try AudioShardSource(path: path)
    }
    guard source.sampleRate == config.sampleRate else {
      throw ConfigError(
        message: "\(path) holds audio at \(source.sampleRate) Hz but sample-rate is \(config.sampleRate); pass --sample-rate \(source.sampleRate)")
    }
    guard source.count > 0 else { throw ConfigError(message: "\(path): no clips") }
    return source
  }

  /// Held-out fraction of the clips.
  public static let testFraction = 0.2

  /// A fixed pseudo-random 80/20 split of `count` clips: clip `i` is a test clip when
  /// `KeyedRandom(0x50117, 0, i, .evaluation)` draws below `testFraction`. It depends on the
  /// index only, so every rank, run and evaluation holds out the same clips. Pretraining sees
  /// only the train part.
  public static func split(count: Int) -> (train: [Int], test: [Int]) {
    var train: [Int] = [], test: [Int] = []
    for i in 0..<count {
      var r = KeyedRandom(seed: 0x5_0117, epoch: 0, sample: i, purpose: .evaluation)
      if r.nextDouble() < testFraction { test.append(i) } else { train.append(i) }
    }
    return (train, test)
  }


  /// The log-mel front end of the configuration, or nil for raw waveforms.
  public static func melFrontEnd(_ config: PretrainConfig) -> LogMelSpectrogram? {
    config.frontEnd == .logmel
      ? LogMelSpectrogram(sampleRate: config.sampleRate, nFFT: config.nFFT, hop: config.hop, nMels: config.nMels)
      : nil
  }

  /// The augmentation set of the configuration (`augmentStrength` 0 or preset `none`: only the
  /// centred crop).
  public static func augmentConfig(_ config: PretrainConfig) throws -> WaveAugmentConfig {
    config.augmentStrength > 0 ? try WaveAugmentConfig.named(config.augmentPreset.rawValue) : .identity
  }
}

/// Audio clips with the CLMR (or MT-SLVR) time-domain augmentations: both views of this
/// rank's share of a global batch, `[2B, 1, 1, L]` raw or `[2B, 1, nMels, frames]` through
/// the log-mel front end, with the 14-column multi-hot labels of the transforms each view
/// received (`WaveTransform` order).
public final class AudioViewSource: ViewBatchSource {
  public let loader: AudioContrastiveLoader
  public let mel: LogMelSpectrogram?
  /// Raw views before the front end (log-mel only).
  private let wave: Storage?

  public init(
    source: AudioSource, sampler: DistributedSampler, augment: WaveAugment, seed: UInt64,
    mel: LogMelSpectrogram? = nil, sampling: AugmentSampling = .simclr
  ) throws {
    loader = try AudioContrastiveLoader(source: source, sampler: sampler, augment: augment, seed: seed, sampling: sampling)
    self.mel = mel
    wave = mel == nil ? nil : Storage(loader.floatsPerBatch)
  }

  public var sampleShape: Shape {
    let L = loader.length
    guard let mel else { return Shape(1, 1, 1, L) }
    return Shape(1, 1, mel.nMels, mel.frameCount(L))
  }
  public var localBatch: Int { loader.sampler.localBatch }
  public var batchesPerEpoch: Int { loader.sampler.batchesPerEpoch }
  public var transformCount: Int { loader.transformColumns }

  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>, transforms: UnsafeMutablePointer<Float>?) throws {
    let target = wave?.data ?? x
    if let transforms {
      try loader.load(epoch: epoch, batch: batch, into: target, transforms: transforms)
    } else {
      try loader.load(epoch: epoch, batch: batch, into: target)
    }
    if let mel { mel.batch(target, rows: loader.rows, length: loader.length, into: x) }
  }
}
