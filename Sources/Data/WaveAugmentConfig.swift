/// Probabilities and parameter ranges of the waveform augmentations (`WaveAugment`). Every
/// range is sampled uniformly. `clmr` and `mtslvr` are the two published sets; `identity`
/// applies nothing (a centred crop only).
public struct WaveAugmentConfig: Equatable, Sendable {
  /// Random (rather than centred) placement of the output window in the clip.
  public var cropProbability: Float = 1
  /// Multiply by −1.
  public var polarityProbability: Float = 0
  /// Add Gaussian noise with σ = (clip's std) × a factor from `gaussianNoiseRelativeStd`.
  public var gaussianNoiseProbability: Float = 0
  public var gaussianNoiseRelativeStd: ClosedRange<Float> = 0.0001...0.01
  /// Scale by `10^(dB/20)`.
  public var gainProbability: Float = 0
  public var gainDB: ClosedRange<Float> = -20 ... -1
  /// A second-order Butterworth low-pass or high-pass (even odds) at a cut-off from the
  /// matching range, in Hz.
  public var filterProbability: Float = 0
  public var lowPassCutoff: ClosedRange<Float> = 2200...4000
  public var highPassCutoff: ClosedRange<Float> = 200...1200
  /// `y = (x + volume·x(t − d)) / 2` with `d` in milliseconds.
  public var delayProbability: Float = 0
  public var delayMilliseconds: ClosedRange<Float> = 200...500
  public var delayVolume: Float = 0.5
  /// Shift the pitch by a number of semitones (WSOLA stretch, then band-limited resampling),
  /// keeping the duration.
  public var pitchShiftProbability: Float = 0
  public var pitchShiftSemitones: ClosedRange<Float> = -5...5
  /// Freeverb with room size, damping and wet fraction from these ranges.
  public var reverbProbability: Float = 0
  public var reverbRoomSize: ClosedRange<Float> = 0...1
  public var reverbDamping: ClosedRange<Float> = 0...1
  public var reverbWet: ClosedRange<Float> = 0.1...0.5
  /// Fade in and out over up to `fadeMaxFraction` of the clip each, with a shape chosen
  /// among linear, quarter-sine, half-sine and exponential.
  public var fadeProbability: Float = 0
  public var fadeMaxFraction: Float = 0.5
  /// Add white Gaussian noise at a signal-to-noise ratio in dB.
  public var whiteNoiseProbability: Float = 0
  public var whiteNoiseSNR: ClosedRange<Float> = 3...30
  /// Add noise with power spectral density ∝ 1/f^β (β = 1 pink, 2 brown, −1 blue) at a
  /// signal-to-noise ratio in dB.
  public var colouredNoiseProbability: Float = 0
  public var colouredNoiseSNR: ClosedRange<Float> = 3...30
  public var colouredNoiseExponent: ClosedRange<Float> = -2...2
  /// Zero a contiguous stretch of up to `timeMaskMaxFraction` of the clip.
  public var timeMaskProbability: Float = 0
  public var timeMaskMaxFraction: Float = 0.1
  /// Roll the clip circularly by up to `timeShiftMaxFraction` of its length either way.
  public var timeShiftProbability: Float = 0
  public var timeShiftMaxFraction: Float = 0.25
  /// Play faster or slower by a rate from the range (WSOLA, pitch unchanged); the crop takes
  /// `rate·L` samples so the output still holds `L`.
  public var timeStretchProbability: Float = 0
  public var timeStretchRate: ClosedRange<Float> = 0.8...1.25

  public init() {}

  /// The probability of `t`.
  public func probability(_ t: WaveTransform) -> Float {
    switch t {
    case .crop: return cropProbability
    case .polarity: return polarityProbability
    case .gaussianNoise: return gaussianNoiseProbability
    case .gain: return gainProbability
    case .filter: return filterProbability
    case .delay: return delayProbability
    case .pitchShift: return pitchShiftProbability
    case .reverb: return reverbProbability
    case .fade: return fadeProbability
    case .whiteNoise: return whiteNoiseProbability
    case .colouredNoise: return colouredNoiseProbability
    case .timeMask: return timeMaskProbability
    case .timeShift: return timeShiftProbability
    case .timeStretch: return timeStretchProbability
    }
  }

  /// Sets the probability of `t`.
  public mutating func setProbability(_ t: WaveTransform, _ p: Float) {
    switch t {
    case .crop: cropProbability = p
    case .polarity: polarityProbability = p
    case .gaussianNoise: gaussianNoiseProbability = p
    case .gain: gainProbability = p
    case .filter: filterProbability = p
    case .delay: delayProbability = p
    case .pitchShift: pitchShiftProbability = p
    case .reverb: reverbProbability = p
    case .fade: fadeProbability = p
    case .whiteNoise: whiteNoiseProbability = p
    case .colouredNoise: colouredNoiseProbability = p
    case .timeMask: timeMaskProbability = p
    case .timeShift: timeShiftProbability = p
    case .timeStretch: timeStretchProbability = p
    }
  }

  /// Only a centred crop: the view is the clip's middle `L` samples.
  public static var identity: WaveAugmentConfig {
    var c = WaveAugmentConfig()
    c.cropProbability = 0
    return c
  }

  /// CLMR's chain (Spijkervet & Burgoyne 2021, `clmr/datasets` transforms): random crop;
  /// polarity p 0.8; noise p 0.01; gain p 0.3; high/low-pass p 0.8; delay p 0.5; pitch
  /// shift p 0.6; reverb p 0.6.
  public static var clmr: WaveAugmentConfig {
    var c = WaveAugmentConfig()
    c.polarityProbability = 0.8
    c.gaussianNoiseProbability = 0.01
    c.gainProbability = 0.3
    c.filterProbability = 0.8
    c.delayProbability = 0.5
    c.pitchShiftProbability = 0.6
    c.reverbProbability = 0.6
    return c
  }

  /// MT-SLVR's set (Heggan et al. 2023): random crop, then pitch shift, fade, white noise,
  /// coloured noise, time masking, time shift and time stretch, each with probability `p`
  /// (0.5 by default), so a view's multi-hot label is informative.
  public static func mtslvr(probability p: Float = 0.5) -> WaveAugmentConfig {
    var c = WaveAugmentConfig()
    for t: WaveTransform in [.pitchShift, .fade, .whiteNoise, .colouredNoise, .timeMask, .timeShift, .timeStretch] {
      c.setProbability(t, p)
    }
    return c
  }

  /// A named preset: `clmr`, `mtslvr`, `none`.
  public static func named(_ name: String) throws -> WaveAugmentConfig {
    switch name {
    case "clmr": return .clmr
    case "mtslvr", "mt-slvr": return .mtslvr()
    case "none", "identity": return .identity
    default:
      throw DataError.invalidArgument("unknown audio augmentation set \"\(name)\"; use clmr, mtslvr or none")
    }
  }
}
