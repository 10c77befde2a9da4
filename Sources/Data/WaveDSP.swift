#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Signal-processing kernels the waveform augmentations are built from. Plain functions on
/// pointers in llm.c's order — output, input, sizes — so the augmenter can run them on its
/// scratch buffers without allocating.
public enum WaveDSP {
  // MARK: Biquad filters

  /// A second-order IIR section `y[t] = b0·x[t] + b1·x[t−1] + b2·x[t−2] − a1·y[t−1] − a2·y[t−2]`
  /// (coefficients normalised by a0).
  public struct Biquad: Equatable, Sendable {
    public var b0: Float, b1: Float, b2: Float, a1: Float, a2: Float

    /// Low-pass from the RBJ Audio EQ Cookbook (bilinear transform of `1/(s² + s/Q + 1)`);
    /// `Q = 1/√2` is the second-order Butterworth response.
    public static func lowPass(cutoff: Double, sampleRate: Double, q: Double = 0.5.squareRoot()) -> Biquad {
      let w0 = 2 * Double.pi * cutoff / sampleRate
      let alpha = sin(w0) / (2 * q), c = cos(w0), a0 = 1 + alpha
      return Biquad(
        b0: Float((1 - c) / 2 / a0), b1: Float((1 - c) / a0), b2: Float((1 - c) / 2 / a0),
        a1: Float(-2 * c / a0), a2: Float((1 - alpha) / a0))
    }

    /// High-pass from the RBJ Audio EQ Cookbook (bilinear transform of `s²/(s² + s/Q + 1)`).
    public static func highPass(cutoff: Double, sampleRate: Double, q: Double = 0.5.squareRoot()) -> Biquad {
      let w0 = 2 * Double.pi * cutoff / sampleRate
      let alpha = sin(w0) / (2 * q), c = cos(w0), a0 = 1 + alpha
      return Biquad(
        b0: Float((1 + c) / 2 / a0), b1: Float(-(1 + c) / a0), b2: Float((1 + c) / 2 / a0),
        a1: Float(-2 * c / a0), a2: Float((1 - alpha) / a0))
    }

    /// `|H(e^{iω})|` at `frequency`: the analytic magnitude response the tests compare with.
    public func magnitude(at frequency: Double, sampleRate: Double) -> Double {
      let w = 2 * Double.pi * frequency / sampleRate
      func poly(_ c0: Double, _ c1: Double, _ c2: Double) -> (Double, Double) {
        (c0 + c1 * cos(w) + c2 * cos(2 * w), -(c1 * sin(w) + c2 * sin(2 * w)))
      }
      let (nr, ni) = poly(Double(b0), Double(b1), Double(b2))
      let (dr, di) = poly(1, Double(a1), Double(a2))
      return ((nr * nr + ni * ni) / (dr * dr + di * di)).squareRoot()
    }

    /// Filters `x` [n] into `y` [n] (may alias) from a zero state (direct form I).
    public func apply(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
      var x1: Float = 0, x2: Float = 0, y1: Float = 0, y2: Float = 0
      for t in 0..<n {
        let xt = x[t]
        let yt = b0 * xt + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
        x2 = x1
        x1 = xt
        y2 = y1
        y1 = yt
        y[t] = yt
      }
    }
  }

  // MARK: Band-limited resampling

  /// Zero crossings on each side of the windowed-sinc kernel.
  static let sincHalfWidth = 8
  /// Table steps per zero crossing.
  static let sincResolution = 256
  /// [halfWidth·resolution + 2] Blackman-windowed sinc on [0, halfWidth], for linear lookup.
  static let sincTable: [Float] = {
    let n = sincHalfWidth * sincResolution
    return (0...(n + 1)).map { i in
      let u = Double(i) / Double(sincResolution)
      if u >= Double(sincHalfWidth) { return 0 }
      let s = u == 0 ? 1 : sin(Double.pi * u) / (Double.pi * u)
      let r = u / Double(sincHalfWidth)
      let w = 0.42 + 0.5 * cos(Double.pi * r) + 0.08 * cos(2 * Double.pi * r)
      return Float(s * w)
    }
  }()

  /// Resamples `x` [srcCount] onto `y` [dstCount] spanning the same duration: output sample `i`
  /// reads position `i·srcCount/dstCount` through a Blackman-windowed sinc of 8 zero crossings
  /// per side, whose cut-off drops to `dstCount/srcCount` of Nyquist when shortening (so the
  /// result is band-limited, not aliased). Reading a signal compressed in time by ratio `ρ`
  /// multiplies its frequencies by `ρ`: the second half of pitch shifting.
  public static func resample(
    _ y: UnsafeMutablePointer<Float>, count dstCount: Int, _ x: UnsafePointer<Float>, count srcCount: Int
  ) {
    guard dstCount > 0 else { return }
    guard srcCount > 0 else {
      y.update(repeating: 0, count: dstCount)
      return
    }
    let step = Double(srcCount) / Double(dstCount)
    let cutoff = min(1, 1 / step)
    let half = Double(sincHalfWidth) / cutoff
    let res = Float(sincResolution)
    let tableEnd = sincHalfWidth * sincResolution
    sincTable.withUnsafeBufferPointer { tp in
      let table = tp.baseAddress!
      for i in 0..<dstCount {
        let pos = Double(i) * step
        let lo = max(0, Int((pos - half).rounded(.up)))
        let hi = min(srcCount - 1, Int((pos + half).rounded(.down)))
        var acc: Float = 0
        if lo <= hi {
          for j in lo...hi {
            let u = Float(abs(Double(j) - pos) * cutoff) * res
            let k = Int(u)
            if k >= tableEnd { continue }
            let f = u - Float(k)
            acc += x[j] * (table[k] + f * (table[k + 1] - table[k]))
          }
        }
        y[i] = acc * Float(cutoff)
      }
    }
  }

  // MARK: Time-scale modification

  /// WSOLA time-scale modification (Verhelst & Roelands 1993): writes `y` [dstCount] with the
  /// content of `x` [srcCount] played `srcCount/dstCount` times faster, without changing its
  /// pitch. Periodic-Hann frames of `frame` samples are overlap-added every `frame/2` output
  /// samples; frame m is read near `m·(frame/2)·srcCount/dstCount`, shifted by up to
  /// `±frame/4` to the position whose first half best matches (cross-correlation, every
  /// second lag) the natural continuation of the previous frame. The output is divided by the
  /// summed window, so the edges keep their level.
  ///
  /// - Parameter scratch: at least `dstCount + frame` floats.
  public static func timeStretch(
    _ y: UnsafeMutablePointer<Float>, count dstCount: Int, _ x: UnsafePointer<Float>, count srcCount: Int,
    frame: Int, scratch: UnsafeMutablePointer<Float>
  ) {
    precondition(frame >= 4 && frame % 2 == 0, "WSOLA frame must be even and ≥ 4")
    guard dstCount > 0 else { return }
    let hop = frame / 2
    let tolerance = frame / 4
    let alpha = Double(srcCount) / Double(dstCount)
    let total = dstCount + frame
    let out = scratch
    // Reuse y's tail? No: accumulate into scratch (values) and keep the window sum implicit —
    // periodic Hann at 50 % overlap sums to 1 except over the first and last half frame.
    out.update(repeating: 0, count: total)
    @inline(__always) func src(_ i: Int) -> Float { i >= 0 && i < srcCount ? x[i] : 0 }
    var window = [Float](repeating: 0, count: frame)
    for i in 0..<frame { window[i] = Float(0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(frame))) }
    var previous = 0  // analysis position of the previous frame
    var m = 0
    while m * hop < dstCount {
      let ideal = Int((Double(m * hop) * alpha).rounded())
      var position = ideal
      if m > 0 {
        let natural = previous + hop
        var best = -Float.infinity
        var delta = -tolerance
        while delta <= tolerance {
          let p = ideal + delta
          var acc: Float = 0
          var t = 0
          while t < hop {
            acc += src(p + t) * src(natural + t)
            t += 2
          }
          if acc > best {
            best = acc
            position = p
          }
          delta += 2
        }
      }
      let base = m * hop
      for t in 0..<frame { out[base + t] += window[t] * src(position + t) }
      previous = position
      m += 1
    }
    for i in 0..<dstCount {
      // Window sum at i: 1 inside, the rising half alone over the first half frame.
      let w: Float = i < hop ? window[i] : 1
      y[i] = w > 1e-3 ? out[i] / w : out[i]
    }
  }

  // MARK: Reverb

  /// Freeverb (Jezar at Dreampoint, 2000) in mono: eight parallel low-pass feedback combs and
  /// four series all-passes with the original delays scaled from 44.1 kHz to `sampleRate`.
  /// `y = (1 − wet)·x + wet·reverb(x)`; room size sets the comb feedback
  /// (`0.7 + 0.28·room`), damping the combs' one-pole low-pass (`0.4·damping`).
  ///
  /// - Parameter scratch: at least `reverbScratchCount(sampleRate:)` floats.
  public static func reverb(
    _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int, sampleRate: Int,
    roomSize: Float, damping: Float, wet: Float, scratch: UnsafeMutablePointer<Float>
  ) {
    let combs = combDelays(sampleRate), passes = allpassDelays(sampleRate)
    let feedback = 0.7 + 0.28 * roomSize
    let damp = 0.4 * damping
    let inputGain: Float = 0.015 * 3  // Freeverb's fixed gain, ×3 for a single (mono) channel
    var offset = 0
    var combState = [(buffer: UnsafeMutablePointer<Float>, length: Int, index: Int, store: Float)]()
    for d in combs {
      combState.append((scratch + offset, d, 0, 0))
      offset += d
    }
    var passState = [(buffer: UnsafeMutablePointer<Float>, length: Int, index: Int)]()
    for d in passes {
      passState.append((scratch + offset, d, 0))
      offset += d
    }
    scratch.update(repeating: 0, count: offset)
    for t in 0..<n {
      let input = x[t] * inputGain
      var acc: Float = 0
      for c in 0..<combState.count {
        let s = combState[c]
        let out = s.buffer[s.index]
        let store = out * (1 - damp) + s.store * damp
        s.buffer[s.index] = input + store * feedback
        combState[c].store = store
        combState[c].index = s.index + 1 == s.length ? 0 : s.index + 1
        acc += out
      }
      for a in 0..<passState.count {
        let s = passState[a]
        let buffered = s.buffer[s.index]
        s.buffer[s.index] = acc + buffered * 0.5
        acc = buffered - acc
        passState[a].index = s.index + 1 == s.length ? 0 : s.index + 1
      }
      y[t] = (1 - wet) * x[t] + wet * acc
    }
  }

  static func combDelays(_ sampleRate: Int) -> [Int] {
    [1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617].map { max(1, $0 * sampleRate / 44100) }
  }

  static func allpassDelays(_ sampleRate: Int) -> [Int] {
    [556, 441, 341, 225].map { max(1, $0 * sampleRate / 44100) }
  }

  /// Scratch floats `reverb` needs at `sampleRate`.
  public static func reverbScratchCount(sampleRate: Int) -> Int {
    combDelays(sampleRate).reduce(0, +) + allpassDelays(sampleRate).reduce(0, +)
  }

  // MARK: Measurements (used by the tests and the corpus tools)

  /// Mean power `Σx²/n`.
  public static func power(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    var acc = 0.0
    for i in 0..<n { acc += Double(x[i]) * Double(x[i]) }
    return n > 0 ? acc / Double(n) : 0
  }

  /// The frequency of a (near-)sinusoid from its rising zero crossings, interpolated
  /// linearly between samples: (crossings − 1) periods over the span between the first and
  /// the last.
  public static func zeroCrossingFrequency(_ x: [Float], sampleRate: Double) -> Double {
    var crossings: [Double] = []
    for i in 1..<x.count where x[i - 1] < 0 && x[i] >= 0 {
      crossings.append(Double(i - 1) + Double(-x[i - 1] / (x[i] - x[i - 1])))
    }
    guard crossings.count >= 2 else { return 0 }
    return Double(crossings.count - 1) / (crossings.last! - crossings.first!) * sampleRate
  }
}
