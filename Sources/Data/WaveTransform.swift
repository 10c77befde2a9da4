/// The waveform augmentations Parallax knows, in the order `WaveAugment` applies them. The
/// raw value is the bit (and the column of the multi-hot label) that says a view received
/// the transform: the target of transformation prediction and MT-SLVR's invariant/equivariant
/// heads.
public enum WaveTransform: Int, CaseIterable, Sendable, CustomStringConvertible {
  // The CLMR set (Spijkervet & Burgoyne 2021).
  case crop, polarity, gaussianNoise, gain, filter, delay, pitchShift, reverb
  // The MT-SLVR set (Heggan et al. 2023), besides pitch shift.
  case fade, whiteNoise, colouredNoise, timeMask, timeShift, timeStretch

  public var description: String {
    switch self {
    case .crop: return "crop"
    case .polarity: return "polarity"
    case .gaussianNoise: return "gaussian_noise"
    case .gain: return "gain"
    case .filter: return "high_low_pass"
    case .delay: return "delay"
    case .pitchShift: return "pitch_shift"
    case .reverb: return "reverb"
    case .fade: return "fade"
    case .whiteNoise: return "white_noise"
    case .colouredNoise: return "coloured_noise"
    case .timeMask: return "time_mask"
    case .timeShift: return "time_shift"
    case .timeStretch: return "time_stretch"
    }
  }
}

/// The set of transforms a view received (bit `t.rawValue` for each).
public struct WaveTransformSet: OptionSet, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }
  public init(_ t: WaveTransform) { rawValue = 1 << UInt32(t.rawValue) }
  public init(transforms: [WaveTransform]) {
    rawValue = 0
    for t in transforms { insert(t) }
  }

  public func contains(_ t: WaveTransform) -> Bool { rawValue & (1 << UInt32(t.rawValue)) != 0 }
  public mutating func insert(_ t: WaveTransform) { rawValue |= 1 << UInt32(t.rawValue) }

  /// The multi-hot label: `WaveTransform.allCases.count` floats, 1 where applied.
  public var multiHot: [Float] { WaveTransform.allCases.map { contains($0) ? 1 : 0 } }

  /// Writes the multi-hot label into `into` [T].
  public func writeMultiHot(into p: UnsafeMutablePointer<Float>) {
    for t in WaveTransform.allCases { p[t.rawValue] = contains(t) ? 1 : 0 }
  }

  public var description: String {
    "[" + WaveTransform.allCases.filter { contains($0) }.map(\.description).joined(separator: ", ") + "]"
  }
}
