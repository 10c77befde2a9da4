/// Fills batches of un-augmented, fixed-length clips for evaluation and feature extraction:
/// each clip's centre `length` samples (zero-padded around the centre when shorter), as the
/// identity `WaveAugment` makes them, shaped `[indices.count, 1, 1, L]`. With a
/// `LogMelSpectrogram`, `loadSpectrograms` gives `[indices.count, 1, nMels, frames]` instead.
/// Not thread-safe; use one per thread.
public final class AudioEvalLoader {
  public let source: AudioSource
  /// Samples per clip `L`.
  public let length: Int
  private let crop: WaveAugment

  public init(source: AudioSource, length: Int) {
    self.source = source
    self.length = length
    crop = WaveAugment(config: .identity, sampleRate: source.sampleRate, length: length)
  }

  /// Writes the clips at `indices` into `x` [indices.count, 1, 1, L].
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    for (row, sample) in indices.enumerated() {
      let clip = try source.samples(sample)
      var rng = KeyedRandom(seed: 0, epoch: 0, sample: sample, purpose: .view1)  // unused by identity
      _ = clip.withUnsafeBufferPointer { crop.apply($0.baseAddress!, count: $0.count, into: x + row * length, rng: &rng) }
    }
  }

  /// Writes the log-mel spectrograms of the clips at `indices` into `x`
  /// [indices.count, 1, nMels, frames] (`frames = mel.frameCount(L)`).
  public func loadSpectrograms<S: Sequence>(
    indices: S, mel: LogMelSpectrogram, into x: UnsafeMutablePointer<Float>
  ) throws where S.Element == Int {
    let per = mel.nMels * mel.frameCount(length)
    var wave = [Float](repeating: 0, count: length)
    for (row, sample) in indices.enumerated() {
      try wave.withUnsafeMutableBufferPointer { try load(indices: [sample], into: $0.baseAddress!) }
      wave.withUnsafeBufferPointer { mel.compute($0.baseAddress!, count: length, into: x + row * per) }
    }
  }

  /// The labels of the clips at `indices` in `slot`.
  public func labels<S: Sequence>(indices: S, slot: Int = 0) -> [Int] where S.Element == Int {
    indices.map { source.label($0, slot: slot) }
  }
}

extension LogMelSpectrogram {
  /// Converts a batch of waveforms `x` [rows, 1, 1, L] into spectrograms `out`
  /// [rows, 1, nMels, frameCount(L)] — the front end between an audio loader and a 2-d
  /// encoder such as `resnet18`.
  public func batch(_ x: UnsafePointer<Float>, rows: Int, length: Int, into out: UnsafeMutablePointer<Float>) {
    let per = nMels * frameCount(length)
    for r in 0..<rows { compute(x + r * length, count: length, into: out + r * per) }
  }
}
