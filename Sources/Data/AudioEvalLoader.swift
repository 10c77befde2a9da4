/// The clean inputs of an audio set for evaluation (an `EvalSource`): each clip's centre
/// `length` samples (zero-padded around the centre when shorter), as the identity
/// `WaveAugment` makes them, `[indices.count, 1, 1, L]`; with a `LogMelSpectrogram` front end
/// their spectrograms, `[indices.count, 1, nMels, frames]`. Labels are the source's slots.
/// Not thread-safe; use one per thread.
public final class AudioEvalLoader: EvalSource {
  public let source: AudioSource
  /// Samples per clip `L`.
  public let length: Int
  /// The front end `load` applies, or nil for raw waveforms.
  public let mel: LogMelSpectrogram?
  public let labelSlots: [LabelSlot]
  private let crop: WaveAugment
  /// [L] waveform before the front end (log-mel only).
  private var wave: [Float]

  public init(source: AudioSource, length: Int, mel: LogMelSpectrogram? = nil) {
    self.source = source
    self.length = length
    self.mel = mel
    labelSlots = zip(source.labelNames, source.classNames).map { LabelSlot(name: $0, classNames: $1) }
    crop = WaveAugment(config: .identity, sampleRate: source.sampleRate, length: length)
    wave = mel == nil ? [] : [Float](repeating: 0, count: length)
  }

  public var count: Int { source.count }
  public var inputShape: InputShape {
    guard let mel else { return InputShape(channels: 1, height: 1, width: length) }
    return InputShape(channels: 1, height: mel.nMels, width: mel.frameCount(length))
  }
  public func label(_ i: Int, slot: Int) -> Int { source.label(i, slot: slot) }

  /// Writes the inputs of the clips at `indices` into `x`: waveforms [indices.count, 1, 1, L],
  /// or through `mel` (when set) spectrograms [indices.count, 1, nMels, frames].
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    guard let mel else { return try loadWaves(indices: indices, into: x) }
    try loadSpectrograms(indices: indices, mel: mel, into: x)
  }

  /// Writes the centre-cropped waveforms of the clips at `indices` into `x` [indices.count, 1, 1, L].
  public func loadWaves<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
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
    if wave.count != length { wave = [Float](repeating: 0, count: length) }
    for (row, sample) in indices.enumerated() {
      try wave.withUnsafeMutableBufferPointer { try loadWaves(indices: [sample], into: $0.baseAddress!) }
      wave.withUnsafeBufferPointer { mel.compute($0.baseAddress!, count: length, into: x + row * per) }
    }
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
