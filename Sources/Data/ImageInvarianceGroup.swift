#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The augmentation groups of amortised invariance learning on images (Chavhan et al., ICLR
/// 2023: appearance and spatial invariances), in the order of the invariance vector v.
public enum ImageInvarianceGroup: Int, CaseIterable, Sendable {
  /// Colour jitter (brightness, contrast; saturation, hue and grayscale on RGB), blur, noise.
  case appearance
  /// Random resized crop and horizontal flip.
  case spatial

  public var name: String {
    switch self {
    case .appearance: "appearance"
    case .spatial: "spatial"
    }
  }

  /// One sample's invariance vector from its `.invariance` stream: a corner of [0, 1]^k, each
  /// entry 0 or 1 with probability ½ (the paper pretrains on corners), or uniform in [0, 1]^k.
  public static func draw(rng: inout KeyedRandom, corners: Bool) -> [Float] {
    drawInvariance(count: allCases.count, rng: &rng, corners: corners)
  }
}

/// `count` entries, each 0 or 1 with probability ½ (`corners`) or uniform in [0, 1].
func drawInvariance(count: Int, rng: inout KeyedRandom, corners: Bool) -> [Float] {
  (0..<count).map { _ in corners ? (rng.bernoulli(0.5) ? 1 : 0) : rng.nextFloat() }
}

extension SimCLRAugment.Config {
  /// SimCLR's pipeline (strength 1) with each group's magnitudes and probabilities scaled by
  /// its entry of `v`, keeping this configuration's normalisation constants:
  ///
  /// | group | a = v[appearance], s = v[spatial] |
  /// |---|---|
  /// | appearance | jitter p 0.8, brightness/contrast/saturation 0.4·a, hue 0.1·a; grayscale p 0.2·a; blur p 0.5·a, σ ∈ [0.1, 0.1 + 1.9·a]; noise p 0.5, σ 0.05·a |
  /// | spatial | crop scale [1 − 0.8·s, 1], ratio (4/3)^±s; flip p 0.5·s |
  ///
  /// v = 0 is the identity (a clean image); v = 1 is `Config(strength: 1)`.
  public func grouped(_ v: [Float]) -> SimCLRAugment.Config {
    precondition(v.count == ImageInvarianceGroup.allCases.count, "invariance vector of \(v.count) values")
    let a = min(1, max(0, v[ImageInvarianceGroup.appearance.rawValue]))
    let s = min(1, max(0, v[ImageInvarianceGroup.spatial.rawValue]))
    var c = SimCLRAugment.Config(strength: 1)
    c.mean = mean
    c.std = std
    c.rgbMean = rgbMean
    c.rgbStd = rgbStd
    c.brightness = 0.4 * a
    c.contrast = 0.4 * a
    c.saturation = 0.4 * a
    c.hue = 0.1 * a
    c.grayscaleProbability = 0.2 * a
    c.blurProbability = 0.5 * a
    c.blurSigma = (0.1, 0.1 + 1.9 * a)
    c.noiseStd = 0.05 * a
    c.cropScale = (1 - 0.8 * s, 1)
    let logRatio = Float(log(4.0 / 3.0)) * s
    c.cropRatio = (expf(-logRatio), expf(logRatio))
    c.flipProbability = 0.5 * s
    return c
  }
}
