/// The augmentation groups of amortised invariance learning on audio, in the order of the
/// invariance vector v: what the sound is like (spectral) and where and how fast it happens
/// (temporal). The paper claims SimCLR on audio without code; these groups are Parallax's,
/// built from the MT-SLVR transforms.
public enum AudioInvarianceGroup: Int, CaseIterable, Sendable {
  /// Pitch shift, high/low-pass filter, white and coloured noise.
  case spectral
  /// Random crop placement, time stretch, time shift, time mask, fade.
  case temporal

  public var name: String {
    switch self {
    case .spectral: "spectral"
    case .temporal: "temporal"
    }
  }

  /// One sample's invariance vector from its `.invariance` stream, as the image groups draw
  /// theirs (`ImageInvarianceGroup.draw`): a corner of [0, 1]^k or uniform in [0, 1]^k.
  public static func draw(rng: inout KeyedRandom, corners: Bool) -> [Float] {
    drawInvariance(count: allCases.count, rng: &rng, corners: corners)
  }
}

extension WaveAugmentConfig {
  /// The transforms of each group with their probabilities and magnitudes scaled by its entry
  /// of `v` (s = v[spectral], t = v[temporal], clamped to [0, 1]):
  ///
  /// | group | transform | probability | magnitude |
  /// |---|---|---|---|
  /// | spectral | pitch shift | 0.5·s | ±5·s semitones |
  /// | spectral | high/low-pass | 0.5·s | CLMR's cut-offs |
  /// | spectral | white, coloured noise | 0.5·s each | SNR in [30 − 27·s, 30] dB |
  /// | temporal | crop placement | t (else centred) | — |
  /// | temporal | time stretch | 0.5·t | rate in [1 − 0.2·t, 1 + 0.25·t] |
  /// | temporal | time shift | 0.5·t | up to 0.25·t of the clip |
  /// | temporal | time mask | 0.5·t | up to 0.1·t of the clip |
  /// | temporal | fade | 0.5·t | up to 0.5·t of the clip each end |
  ///
  /// v = 0 is `identity` (the centred window, nothing else); v = 1 is MT-SLVR's set at p 0.5
  /// with CLMR's filter added. No magnitude exceeds v = 1's, so an augmenter built with
  /// `grouped([1, 1])` has scratch for every v (`WaveAugment.config`).
  public static func grouped(_ v: [Float]) -> WaveAugmentConfig {
    precondition(v.count == AudioInvarianceGroup.allCases.count, "invariance vector of \(v.count) values")
    let s = min(1, max(0, v[AudioInvarianceGroup.spectral.rawValue]))
    let t = min(1, max(0, v[AudioInvarianceGroup.temporal.rawValue]))
    var c = WaveAugmentConfig.identity
    c.pitchShiftProbability = 0.5 * s
    c.pitchShiftSemitones = (-5 * s)...(5 * s)
    c.filterProbability = 0.5 * s
    c.whiteNoiseProbability = 0.5 * s
    c.whiteNoiseSNR = (30 - 27 * s)...30
    c.colouredNoiseProbability = 0.5 * s
    c.colouredNoiseSNR = (30 - 27 * s)...30
    c.cropProbability = t
    c.timeStretchProbability = 0.5 * t
    c.timeStretchRate = (1 - 0.2 * t)...(1 + 0.25 * t)
    c.timeShiftProbability = 0.5 * t
    c.timeShiftMaxFraction = 0.25 * t
    c.timeMaskProbability = 0.5 * t
    c.timeMaskMaxFraction = 0.1 * t
    c.fadeProbability = 0.5 * t
    c.fadeMaxFraction = 0.5 * t
    return c
  }
}
