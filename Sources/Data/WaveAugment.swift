#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Time-domain augmentation of mono clips into fixed-length views of `length` samples: the
/// CLMR and MT-SLVR transforms (`WaveTransform`), each applied with its probability from
/// `WaveAugmentConfig`, in this order:
///
/// 1. time stretch decides how many source samples the window covers (`rate·L`);
/// 2. crop: a random window (or the centred one), zero-padded at a random place when the
///    clip is shorter; the stretch then maps it to `L` samples;
/// 3. polarity, Gaussian noise, gain, high/low-pass, delay, pitch shift, reverb (CLMR order);
/// 4. fade, white noise, coloured noise, time mask, time shift.
///
/// Every draw comes from the `KeyedRandom` passed in (DESIGN invariant 5): the coin of each
/// transform first, then its parameters if it applies. `apply` returns the set of transforms
/// applied: the multi-hot label.
///
/// Holds scratch buffers: one instance per thread.
public final class WaveAugment {
  /// The transforms and their ranges. Settable between views (amortised invariance learning
  /// scales them per sample) within the scratch the instance was built for: a stretch rate or
  /// pitch range wider than the initial configuration's is a programming error.
  public var config: WaveAugmentConfig {
    didSet {
      precondition(
        max(1, config.timeStretchRate.upperBound) <= maxRate && Self.pitchFactor(config) <= maxPitch,
        "WaveAugment: a configuration with a wider stretch or pitch range than the one it was built for")
    }
  }
  /// The largest stretch rate and pitch factor the scratch buffers hold.
  private let maxRate: Float
  private let maxPitch: Float
  /// Sample rate of the clips, Hz (sets filter cut-offs, delays and reverb sizes).
  public let sampleRate: Int
  /// Samples per output view `L`.
  public let length: Int
  /// WSOLA frame (≈ 46 ms, even).
  public let stretchFrame: Int

  /// [L·maxRate + 1] the window before stretching.
  private var window: [Float]
  /// [max(window, 2L) + frame] WSOLA / resampling scratch.
  private var scratchA: [Float]
  private var scratchB: [Float]
  /// Freeverb delay lines.
  private var reverbScratch: [Float]
  /// Coloured-noise FFT of size ≥ L and its buffers.
  private let fft: RealFFT
  private var noise: [Float], noiseRe: [Float], noiseIm: [Float]

  public init(config: WaveAugmentConfig, sampleRate: Int, length: Int) {
    precondition(sampleRate > 0 && length > 0, "WaveAugment needs a positive sample rate and length")
    self.config = config
    self.sampleRate = sampleRate
    self.length = length
    stretchFrame = max(4, Int(0.023 * Double(sampleRate)) * 2)
    let maxRate = max(1, config.timeStretchRate.upperBound)
    let maxPitch = Self.pitchFactor(config)
    self.maxRate = maxRate
    self.maxPitch = maxPitch
    let windowCount = Int((Float(length) * maxRate).rounded(.up)) + 1
    window = [Float](repeating: 0, count: windowCount)
    let scratchCount = max(windowCount, Int((Float(length) * maxPitch).rounded(.up)) + 1) + stretchFrame + 1
    scratchA = [Float](repeating: 0, count: scratchCount)
    scratchB = [Float](repeating: 0, count: scratchCount)
    reverbScratch = [Float](repeating: 0, count: WaveDSP.reverbScratchCount(sampleRate: sampleRate))
    var n = 2
    while n < length { n <<= 1 }
    fft = RealFFT(size: n)
    noise = [Float](repeating: 0, count: n)
    noiseRe = [Float](repeating: 0, count: n / 2 + 1)
    noiseIm = [Float](repeating: 0, count: n / 2 + 1)
  }

  /// 2^(largest |semitones| / 12) of `config`'s pitch range.
  static func pitchFactor(_ config: WaveAugmentConfig) -> Float {
    let r = config.pitchShiftSemitones
    return Float(pow(2, Double(max(abs(r.lowerBound), abs(r.upperBound))) / 12))
  }

  /// A new instance with the same configuration (for another thread).
  public func copy() -> WaveAugment { WaveAugment(config: config, sampleRate: sampleRate, length: length) }

  /// Writes one augmented view of clip `x` [count] into `y` [L].
  /// - Returns: the transforms applied.
  @discardableResult
  public func apply(
    _ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>, rng: inout KeyedRandom
  ) -> WaveTransformSet {
    var applied = WaveTransformSet()
    let c = config
    let L = length
    func coin(_ t: WaveTransform) -> Bool {
      let p = c.probability(t)
      let hit = rng.nextFloat() < p
      if hit { applied.insert(t) }
      return hit
    }
    func draw(_ r: ClosedRange<Float>) -> Float { rng.uniform(r.lowerBound, r.upperBound) }

    // 1–2. Stretch rate, crop window, stretch.
    var rate: Float = 1
    if coin(.timeStretch) { rate = draw(c.timeStretchRate) }
    let span = rate == 1 ? L : max(1, Int((Float(L) * rate).rounded()))
    let random = coin(.crop)
    window.withUnsafeMutableBufferPointer { wp in
      let w = wp.baseAddress!
      if count >= span {
        let offset = random ? rng.nextInt(below: count - span + 1) : (count - span) / 2
        w.update(from: x + offset, count: span)
      } else {
        let offset = random ? rng.nextInt(below: span - count + 1) : (span - count) / 2
        w.update(repeating: 0, count: span)
        (w + offset).update(from: x, count: count)
      }
      if span == L {
        y.update(from: w, count: L)
      } else {
        scratchA.withUnsafeMutableBufferPointer {
          WaveDSP.timeStretch(y, count: L, w, count: span, frame: stretchFrame, scratch: $0.baseAddress!)
        }
      }
    }

    // 3. The CLMR chain.
    if coin(.polarity) { for i in 0..<L { y[i] = -y[i] } }
    if coin(.gaussianNoise) {
      let std = Float(Self.standardDeviation(y, L)) * draw(c.gaussianNoiseRelativeStd)
      for i in 0..<L { y[i] += std * rng.nextGaussian() }
    }
    if coin(.gain) {
      let g = powf(10, draw(c.gainDB) / 20)
      for i in 0..<L { y[i] *= g }
    }
    if coin(.filter) {
      let low = rng.nextFloat() < 0.5
      let nyquist = Float(sampleRate) / 2 * 0.95
      let filter =
        low
        ? WaveDSP.Biquad.lowPass(cutoff: Double(min(draw(c.lowPassCutoff), nyquist)), sampleRate: Double(sampleRate))
        : WaveDSP.Biquad.highPass(cutoff: Double(min(draw(c.highPassCutoff), nyquist)), sampleRate: Double(sampleRate))
      filter.apply(y, y, count: L)
    }
    if coin(.delay) {
      let d = Int((draw(c.delayMilliseconds) * Float(sampleRate) / 1000).rounded())
      Self.delay(y, count: L, lag: d, volume: c.delayVolume)
    }
    if coin(.pitchShift) {
      pitchShift(y, semitones: draw(c.pitchShiftSemitones))
    }
    if coin(.reverb) {
      let room = draw(c.reverbRoomSize), damping = draw(c.reverbDamping), wet = draw(c.reverbWet)
      reverbScratch.withUnsafeMutableBufferPointer {
        WaveDSP.reverb(
          y, y, count: L, sampleRate: sampleRate, roomSize: room, damping: damping, wet: wet,
          scratch: $0.baseAddress!)
      }
    }

    // 4. The MT-SLVR additions.
    if coin(.fade) {
      let fadeIn = Int(rng.nextFloat() * c.fadeMaxFraction * Float(L))
      let fadeOut = Int(rng.nextFloat() * c.fadeMaxFraction * Float(L))
      let shape = rng.nextInt(below: 4)
      Self.fade(y, count: L, fadeIn: fadeIn, fadeOut: fadeOut, shape: shape)
    }
    if coin(.whiteNoise) {
      let std = Float(Self.noiseStd(signalPower: WaveDSP.power(y, count: L), snrDB: draw(c.whiteNoiseSNR)))
      for i in 0..<L { y[i] += std * rng.nextGaussian() }
    }
    if coin(.colouredNoise) {
      let snr = draw(c.colouredNoiseSNR), beta = draw(c.colouredNoiseExponent)
      addColouredNoise(y, exponent: beta, snrDB: snr, rng: &rng)
    }
    if coin(.timeMask) {
      let width = min(L, Int(rng.nextFloat() * c.timeMaskMaxFraction * Float(L)))
      let start = rng.nextInt(below: L - width + 1)
      (y + start).update(repeating: 0, count: width)
    }
    if coin(.timeShift) {
      let maxShift = Int(c.timeShiftMaxFraction * Float(L))
      let shift = maxShift > 0 ? rng.nextInt(below: 2 * maxShift + 1) - maxShift : 0
      scratchA.withUnsafeMutableBufferPointer { Self.roll(y, count: L, by: shift, scratch: $0.baseAddress!) }
    }
    return applied
  }

  // MARK: Transforms used by `apply`, public for tests and tools

  /// `y = (y + volume·y(t − lag)) / 2` in place (CLMR's delay).
  public static func delay(_ y: UnsafeMutablePointer<Float>, count n: Int, lag: Int, volume: Float) {
    guard lag > 0 else { return }
    var i = n - 1
    while i >= 0 {
      let delayed = i >= lag ? y[i - lag] * volume : 0
      y[i] = (y[i] + delayed) / 2
      i -= 1
    }
  }

  /// Rolls `y` [n] circularly right by `shift` (negative: left), as `torch.roll`.
  public static func roll(_ y: UnsafeMutablePointer<Float>, count n: Int, by shift: Int, scratch: UnsafeMutablePointer<Float>) {
    guard n > 0 else { return }
    let s = ((shift % n) + n) % n
    if s == 0 { return }
    scratch.update(from: y, count: n)
    (y + s).update(from: scratch, count: n - s)
    y.update(from: scratch + n - s, count: s)
  }

  /// Multiplies the first `fadeIn` and last `fadeOut` samples by a rising / falling ramp:
  /// shape 0 linear, 1 quarter-sine, 2 half-sine, 3 exponential (`2^{10(r−1)}`).
  public static func fade(_ y: UnsafeMutablePointer<Float>, count n: Int, fadeIn: Int, fadeOut: Int, shape: Int) {
    func ramp(_ r: Float) -> Float {
      switch shape {
      case 1: return sinf(r * .pi / 2)
      case 2: return 0.5 - 0.5 * cosf(r * .pi)
      case 3: return r <= 0 ? 0 : powf(2, 10 * (r - 1))
      default: return r
      }
    }
    let a = min(fadeIn, n), b = min(fadeOut, n)
    for i in 0..<a { y[i] *= ramp(Float(i) / Float(a)) }
    for i in 0..<b { y[n - 1 - i] *= ramp(Float(i) / Float(b)) }
  }

  /// The noise standard deviation that gives `snrDB` against a signal of mean power
  /// `signalPower`: `σ = √(P / 10^{snr/10})`.
  public static func noiseStd(signalPower: Double, snrDB: Float) -> Double {
    (signalPower / pow(10, Double(snrDB) / 10)).squareRoot()
  }

  static func standardDeviation(_ y: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = 0.0, s2 = 0.0
    for i in 0..<n {
      s += Double(y[i])
      s2 += Double(y[i]) * Double(y[i])
    }
    let m = s / Double(n)
    return max(0, s2 / Double(n) - m * m).squareRoot()
  }

  /// Pitch shift by `semitones` keeping the length: WSOLA-stretch `L` samples to
  /// `round(L·ρ)` (`ρ = 2^{s/12}`, same pitch, longer), then resample back to `L` (compressing
  /// time by `ρ` multiplies every frequency by `ρ`).
  public func pitchShift(_ y: UnsafeMutablePointer<Float>, semitones: Float) {
    let ratio = pow(2, Double(semitones) / 12)
    let stretched = max(1, Int((Double(length) * ratio).rounded()))
    scratchA.withUnsafeMutableBufferPointer { a in
      scratchB.withUnsafeMutableBufferPointer { b in
        WaveDSP.timeStretch(b.baseAddress!, count: stretched, y, count: length, frame: stretchFrame, scratch: a.baseAddress!)
        WaveDSP.resample(y, count: length, b.baseAddress!, count: stretched)
      }
    }
  }

  /// Adds noise with power spectral density ∝ 1/f^β at `snrDB` to `y` [L]: white Gaussian
  /// noise is shaped in the frequency domain (bin k scaled by `k^{−β/2}`, DC removed) with
  /// the real FFT, cut to `L` samples and scaled to the exact target power.
  public func addColouredNoise(_ y: UnsafeMutablePointer<Float>, exponent beta: Float, snrDB: Float, rng: inout KeyedRandom) {
    let n = fft.size, L = length
    let signalPower = WaveDSP.power(y, count: L)
    guard signalPower > 0 else { return }
    for i in 0..<n { noise[i] = rng.nextGaussian() }
    noise.withUnsafeMutableBufferPointer { np in
      noiseRe.withUnsafeMutableBufferPointer { re in
        noiseIm.withUnsafeMutableBufferPointer { im in
          fft.forward(np.baseAddress!, re: re.baseAddress!, im: im.baseAddress!)
          re[0] = 0
          im[0] = 0
          for k in 1..<re.count {
            let g = powf(Float(k), -beta / 2)
            re[k] *= g
            im[k] *= g
          }
          fft.inverse(re: re.baseAddress!, im: im.baseAddress!, into: np.baseAddress!)
        }
      }
      let p = WaveDSP.power(np.baseAddress!, count: L)
      guard p > 0 else { return }
      let scale = Float(Self.noiseStd(signalPower: signalPower, snrDB: snrDB) / p.squareRoot())
      for i in 0..<L { y[i] += scale * np[i] }
    }
  }
}
