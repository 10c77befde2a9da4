import XCTest

@testable import Data

/// Analytic checks of each waveform augmentation (issue 6).
final class WaveAugmentTests: XCTestCase {
  let sr = 16000

  /// An augmenter with only `t` enabled (probability 1) and a centred crop.
  func only(_ t: WaveTransform, length: Int, _ edit: (inout WaveAugmentConfig) -> Void = { _ in }) -> WaveAugment {
    var c = WaveAugmentConfig.identity
    c.setProbability(t, 1)
    edit(&c)
    return WaveAugment(config: c, sampleRate: sr, length: length)
  }

  func view(_ a: WaveAugment, _ x: [Float], sample: Int = 0) -> ([Float], WaveTransformSet) {
    var y = [Float](repeating: 0, count: a.length)
    var rng = KeyedRandom(seed: 9, epoch: 0, sample: sample, purpose: .view1)
    let applied = a.apply(x, count: x.count, into: &y, rng: &rng)
    return (y, applied)
  }

  func testIdentityIsCentredCrop() {
    let x = (0..<100).map { Float($0) }
    let a = WaveAugment(config: .identity, sampleRate: sr, length: 60)
    let (y, applied) = view(a, x)
    XCTAssertEqual(y, Array(x[20..<80]))
    XCTAssertEqual(applied, [])
    // Shorter clips are zero-padded around the centre.
    let (z, _) = view(WaveAugment(config: .identity, sampleRate: sr, length: 8), [1, 2, 3, 4])
    XCTAssertEqual(z, [0, 0, 1, 2, 3, 4, 0, 0])
  }

  func testRandomCropIsAWindowOfTheClip() {
    let x = (0..<1000).map { Float($0) }
    let a = only(.crop, length: 100)
    var offsets = Set<Float>()
    for s in 0..<20 {
      let (y, applied) = view(a, x, sample: s)
      XCTAssertEqual(applied, WaveTransformSet(.crop))
      for i in 1..<100 { XCTAssertEqual(y[i], y[0] + Float(i)) }
      offsets.insert(y[0])
    }
    XCTAssertGreaterThan(offsets.count, 10, "crop offsets should vary with the sample key")
  }

  func testPolarityFlipsSign() {
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: 512)
    let (y, applied) = view(only(.polarity, length: 512), x)
    XCTAssertEqual(applied, WaveTransformSet(.polarity))
    XCTAssertEqual(y, x.map { -$0 })
  }

  func testGainScalesByDecibelFactor() {
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: 512)
    let (y, applied) = view(only(.gain, length: 512) { $0.gainDB = -6 ... -6 }, x)
    XCTAssertTrue(applied.contains(.gain))
    let factor = Float(pow(10, -6.0 / 20))  // 0.501
    for i in 0..<512 { XCTAssertEqual(y[i], x[i] * factor, accuracy: 1e-6) }
  }

  /// A 4 kHz tone through a 1 kHz low-pass keeps |H(4 kHz)| of its amplitude in steady state,
  /// the analytic Butterworth value 1/√(1 + (tan(πf/sr)/tan(πfc/sr))⁴).
  func testLowPassAttenuatesHighToneByAnalyticResponse() {
    let lp = WaveDSP.Biquad.lowPass(cutoff: 1000, sampleRate: Double(sr))
    let f = 4000.0
    let analytic = 1 / (1 + pow(tan(Double.pi * f / Double(sr)) / tan(Double.pi * 1000 / Double(sr)), 4)).squareRoot()
    XCTAssertEqual(lp.magnitude(at: f, sampleRate: Double(sr)), analytic, accuracy: 1e-6)
    XCTAssertEqual(lp.magnitude(at: 1000, sampleRate: Double(sr)), 0.5.squareRoot(), accuracy: 1e-6)  // −3 dB at the cut-off
    let x = AudioTestSupport.sine(f, sampleRate: sr, count: 4000)
    var y = x
    lp.apply(&y, x, count: x.count)
    let measured = AudioTestSupport.rms(y, 1000..<4000) / AudioTestSupport.rms(x, 1000..<4000)
    XCTAssertEqual(measured, analytic, accuracy: 0.01 * analytic)
    XCTAssertLessThan(measured, 0.07)  // ≈ −24 dB

    // The same through the augmenter, with the low-pass forced.
    var seenLow = false
    for s in 0..<16 {
      let a = only(.filter, length: 4000) { $0.lowPassCutoff = 1000...1000; $0.highPassCutoff = 200...200 }
      let (z, applied) = view(a, x, sample: s)
      XCTAssertTrue(applied.contains(.filter))
      let ratio = AudioTestSupport.rms(z, 1000..<4000) / AudioTestSupport.rms(x, 1000..<4000)
      if ratio < 0.5 {
        seenLow = true
        XCTAssertEqual(ratio, analytic, accuracy: 0.01 * analytic)
      } else {  // the high-pass at 200 Hz passes 4 kHz
        XCTAssertEqual(ratio, WaveDSP.Biquad.highPass(cutoff: 200, sampleRate: Double(sr)).magnitude(at: f, sampleRate: Double(sr)), accuracy: 0.01)
      }
    }
    XCTAssertTrue(seenLow)
  }

  /// Resampling-based pitch shift by +4 and −3 semitones moves a 440 Hz sine by 2^(s/12).
  func testPitchShiftMovesFrequencyByRatio() {
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: 8000)
    for semitones: Float in [4, -3] {
      let a = only(.pitchShift, length: 8000) { $0.pitchShiftSemitones = semitones...semitones }
      let (y, applied) = view(a, x)
      XCTAssertTrue(applied.contains(.pitchShift))
      let f = WaveDSP.zeroCrossingFrequency(Array(y[1000..<7000]), sampleRate: Double(sr))
      let expected = 440 * pow(2, Double(semitones) / 12)
      XCTAssertEqual(f, expected, accuracy: 0.01 * expected, "\(semitones) semitones")
    }
  }

  /// Time stretch changes duration, not frequency: a 300 Hz sine stays at 300 Hz.
  func testTimeStretchKeepsFrequency() {
    let x = AudioTestSupport.sine(300, sampleRate: sr, count: 16000)
    for rate: Float in [0.8, 1.25] {
      let a = only(.timeStretch, length: 8000) { $0.timeStretchRate = rate...rate }
      let (y, applied) = view(a, x)
      XCTAssertTrue(applied.contains(.timeStretch))
      let f = WaveDSP.zeroCrossingFrequency(Array(y[500..<7500]), sampleRate: Double(sr))
      XCTAssertEqual(f, 300, accuracy: 3, "rate \(rate)")
    }
    // A ramp stretched by 1.25 advances 1.25 source samples per output sample.
    let ramp = (0..<16000).map { Float($0) / 16000 }
    let a = only(.timeStretch, length: 4000) { $0.timeStretchRate = 1.25...1.25 }
    let (y, _) = view(a, ramp)
    let slope = Double(y[3000] - y[1000]) / 2000 * 16000
    XCTAssertEqual(slope, 1.25, accuracy: 0.05)
  }

  /// The delayed copy appears at the expected lag: the cross-correlation of (y − x/2) with x
  /// peaks at `d = 100 ms`.
  func testDelayAppearsAtExpectedLag() {
    var rng = KeyedRandom(seed: 3, epoch: 0, sample: 0, purpose: .noise)
    let n = 4000
    let x = (0..<n).map { _ in rng.nextGaussian() * 0.1 }
    let a = only(.delay, length: n) { $0.delayMilliseconds = 100...100 }
    let (y, applied) = view(a, x)
    XCTAssertTrue(applied.contains(.delay))
    let lag = 100 * sr / 1000
    var bestLag = 0
    var best = -Double.infinity
    for l in 1..<(n * 3 / 4) {
      var acc = 0.0
      for i in l..<n { acc += Double(y[i] - x[i] / 2) * Double(x[i - l]) }
      if acc > best { best = acc; bestLag = l }
    }
    XCTAssertEqual(bestLag, lag)
    // And its amplitude is volume/2.
    for i in lag..<(lag + 10) { XCTAssertEqual(y[i], (x[i] + 0.5 * x[i - lag]) / 2, accuracy: 1e-6) }
  }

  func testWhiteNoiseHitsRequestedSNR() {
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: 16000)
    let a = only(.whiteNoise, length: 16000) { $0.whiteNoiseSNR = 10...10 }
    let (y, _) = view(a, x)
    let noise = zip(y, x).map { $0 - $1 }
    let snr = 10 * log10(WaveDSP.power(x, count: x.count) / WaveDSP.power(noise, count: noise.count))
    XCTAssertEqual(snr, 10, accuracy: 0.3)
  }

  /// Brown noise (β = 2) is exactly at the SNR and puts most of its power in low frequencies;
  /// blue noise (β = −1) in high ones.
  func testColouredNoiseSNRAndSlope() {
    let n = 4096
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: n)
    func lowFraction(_ beta: Float) -> Double {
      let a = only(.colouredNoise, length: n) { $0.colouredNoiseSNR = 20...20; $0.colouredNoiseExponent = beta...beta }
      let (y, _) = view(a, x)
      let noise = zip(y, x).map { $0 - $1 }
      let snr = 10 * log10(WaveDSP.power(x, count: n) / WaveDSP.power(noise, count: n))
      XCTAssertEqual(snr, 20, accuracy: 1e-3, "β = \(beta)")
      let fft = RealFFT(size: n)
      var re = [Float](repeating: 0, count: n / 2 + 1), im = re
      fft.forward(noise, re: &re, im: &im)
      let p = zip(re, im).map { Double($0 * $0 + $1 * $1) }
      return p[0..<(n / 16)].reduce(0, +) / p.reduce(0, +)  // the lowest eighth of the band
    }
    XCTAssertGreaterThan(lowFraction(2), 0.9)
    XCTAssertLessThan(lowFraction(-1), 0.03)  // ≈ 1/64 for PSD ∝ f
  }

  /// On a ramp with no zero sample, every view is the ramp with one contiguous stretch of at
  /// most 20 % zeroed; the stretch is non-empty in (almost) every view and moves with the key,
  /// so an augmenter that masks nothing fails.
  func testTimeMaskZeroesOneStretch() {
    let x = (0..<1000).map { Float($0 + 1) }
    let a = only(.timeMask, length: 1000) { $0.timeMaskMaxFraction = 0.2 }
    var masked = 0
    var starts = Set<Int>()
    for s in 0..<20 {
      let (y, applied) = view(a, x, sample: s)
      XCTAssertEqual(applied, WaveTransformSet(.timeMask))
      let zeros = y.enumerated().filter { $0.element == 0 }.map(\.offset)
      XCTAssertLessThanOrEqual(zeros.count, 200)
      guard let first = zeros.first else { continue }
      masked += 1
      starts.insert(first)
      XCTAssertEqual(zeros, Array(first..<(first + zeros.count)), "one contiguous stretch")
      for i in 0..<1000 where y[i] != 0 { XCTAssertEqual(y[i], x[i], "outside the mask the clip is unchanged") }
    }
    XCTAssertGreaterThanOrEqual(masked, 18, "widths are uniform in [0, 200): an empty mask is rare")
    XCTAssertGreaterThan(starts.count, 10, "the mask position varies with the sample key")
  }

  /// Every view is a circular roll of the ramp by |s| ≤ 25 % of its length; the shifts vary
  /// with the key and are not all zero, so an augmenter that does not roll fails.
  func testTimeShiftRollsCircularly() {
    let x = (0..<100).map { Float($0) }
    let a = only(.timeShift, length: 100) { $0.timeShiftMaxFraction = 0.25 }
    var shifts = Set<Int>()
    for sample in 0..<20 {
      let (y, applied) = view(a, x, sample: sample)
      XCTAssertEqual(applied, WaveTransformSet(.timeShift))
      let s = (100 - Int(y[0])) % 100  // y[s] = x[0]
      for i in 0..<100 { XCTAssertEqual(y[(i + s) % 100], x[i], "sample \(sample): a roll by \(s)") }
      let signed = s > 50 ? s - 100 : s
      XCTAssertLessThanOrEqual(abs(signed), 25)
      shifts.insert(signed)
    }
    XCTAssertGreaterThan(shifts.count, 8, "the shift varies with the sample key: \(shifts.sorted())")
    XCTAssertTrue(shifts.contains { $0 < 0 } && shifts.contains { $0 > 0 }, "both directions: \(shifts.sorted())")
  }

  /// `fade` multiplies the ends by the documented ramps, exactly.
  func testFadeRampShapes() {
    func faded(_ shape: Int) -> [Float] {
      var y = (0..<10).map { Float($0 + 1) }
      y.withUnsafeMutableBufferPointer { WaveAugment.fade($0.baseAddress!, count: 10, fadeIn: 4, fadeOut: 2, shape: shape) }
      return y
    }
    XCTAssertEqual(faded(0), [0, 2 * 0.25, 3 * 0.5, 4 * 0.75, 5, 6, 7, 8, 9 * 0.5, 0])
    let quarterSine = faded(1)
    XCTAssertEqual(quarterSine[1], 2 * sinf(0.25 * .pi / 2), accuracy: 1e-6)
    XCTAssertEqual(quarterSine[8], 9 * sinf(0.5 * .pi / 2), accuracy: 1e-6)
    let halfSine = faded(2)
    XCTAssertEqual(halfSine[2], 3 * (0.5 - 0.5 * cosf(0.5 * .pi)), accuracy: 1e-6)
    let exponential = faded(3)
    XCTAssertEqual(exponential[3], 4 * powf(2, 10 * (0.75 - 1)), accuracy: 1e-6)
    for y in [quarterSine, halfSine, exponential] {
      XCTAssertEqual(y[0], 0)
      XCTAssertEqual(y[9], 0)
      XCTAssertEqual(Array(y[4..<8]), [5, 6, 7, 8])
    }
  }

  /// Through the augmenter, a constant clip comes out silent at both ends, rising to 1 and
  /// falling from it, with fade lengths (the first and last sample that reach 1) that vary
  /// with the key: a no-op augmenter leaves every sample at 1 and fails.
  func testFadeRampsEnds() {
    let x = [Float](repeating: 1, count: 1000)
    let a = only(.fade, length: 1000)
    var fadeIns = Set<Int>()
    for s in 0..<12 {
      let (y, applied) = view(a, x, sample: s)
      XCTAssertEqual(applied, WaveTransformSet(.fade))
      XCTAssertEqual(y[500], 1)  // fades cover at most half each, and the middle sample is never both
      for i in 1..<500 { XCTAssertGreaterThanOrEqual(y[i], y[i - 1]) }
      for i in 500..<999 { XCTAssertGreaterThanOrEqual(y[i], y[i + 1]) }
      let fadeIn = y.firstIndex(of: 1)!
      let fadeOut = 999 - y.lastIndex(of: 1)!
      if fadeIn > 0 { XCTAssertEqual(y[0], 0, "every ramp starts at 0") }
      if fadeOut > 0 { XCTAssertEqual(y[999], 0) }
      XCTAssertLessThanOrEqual(fadeIn, 500)
      XCTAssertLessThanOrEqual(fadeOut, 500)
      fadeIns.insert(fadeIn)
    }
    XCTAssertGreaterThan(fadeIns.count, 6, "fade lengths vary with the key: \(fadeIns.sorted())")
    XCTAssertFalse(fadeIns.contains(0) && fadeIns.count == 1)
  }

  /// An impulse gets a decaying tail: energy after the shortest comb delay, less in the last
  /// quarter second than in the first.
  func testReverbAddsDecayingTail() {
    var x = [Float](repeating: 0, count: 16000)
    x[0] = 1
    let a = only(.reverb, length: 16000) { $0.reverbRoomSize = 0.5...0.5; $0.reverbWet = 0.5...0.5 }
    let (y, applied) = view(a, x)
    XCTAssertTrue(applied.contains(.reverb))
    XCTAssertEqual(y[0], 0.5, accuracy: 1e-6)  // the dry half
    let early = AudioTestSupport.rms(y, 500..<4000), late = AudioTestSupport.rms(y, 12000..<16000)
    XCTAssertGreaterThan(early, 1e-4)
    XCTAssertLessThan(late, early / 4)
    XCTAssertTrue(y.allSatisfy { $0.isFinite })
  }

  func testGaussianNoiseIsRelativeToSignal() {
    let x = AudioTestSupport.sine(440, sampleRate: sr, count: 16000)
    let (y, _) = view(only(.gaussianNoise, length: 16000) { $0.gaussianNoiseRelativeStd = 0.01...0.01 }, x)
    let noise = zip(y, x).map { $0 - $1 }
    let ratio = AudioTestSupport.rms(noise, 0..<16000) / AudioTestSupport.rms(x, 0..<16000)
    XCTAssertEqual(ratio, 0.01, accuracy: 0.0005)
  }

  /// Views are a pure function of the key: equal keys give equal views and labels, and the
  /// CLMR chain applies transforms at about their probabilities.
  func testKeyedDeterminismAndLabels() {
    let x = AudioTestSupport.sine(220, sampleRate: sr, count: 3000)
    let a = WaveAugment(config: .clmr, sampleRate: sr, length: 2000)
    let b = a.copy()
    var counts = [Int](repeating: 0, count: WaveTransform.allCases.count)
    let trials = 40
    for s in 0..<trials {
      let (y1, l1) = view(a, x, sample: s)
      let (y2, l2) = view(b, x, sample: s)
      XCTAssertEqual(y1, y2)
      XCTAssertEqual(l1, l2)
      XCTAssertTrue(y1.allSatisfy { $0.isFinite })
      for t in WaveTransform.allCases where l1.contains(t) { counts[t.rawValue] += 1 }
    }
    XCTAssertEqual(counts[WaveTransform.crop.rawValue], trials)
    XCTAssertEqual(counts[WaveTransform.timeStretch.rawValue], 0)
    let polarity = Double(counts[WaveTransform.polarity.rawValue]) / Double(trials)
    XCTAssertEqual(polarity, 0.8, accuracy: 0.2)
    XCTAssertEqual(WaveTransformSet(transforms: [.polarity, .delay]).multiHot.count, WaveTransform.allCases.count)
    XCTAssertEqual(WaveTransformSet(.delay).multiHot[WaveTransform.delay.rawValue], 1)
  }
}
