#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Log-mel spectrogram front end, matching `torchaudio.transforms.MelSpectrogram` with its
/// defaults (then a log):
///
/// - frames: `center = true` — the signal is reflect-padded by `nFFT/2` on each side, so there
///   are `1 + L/hop` frames; each is multiplied by a periodic Hann window of `nFFT` samples;
/// - power spectrum `|X[k]|²` with the radix-2 `RealFFT` (`nFFT` a power of two);
/// - mel filterbank on the **HTK** scale `mel(f) = 2595·log10(1 + f/700)`, no area
///   normalisation (torchaudio's `mel_scale="htk", norm=None`): `nMels` triangles whose
///   corners are equally spaced in mel between `fMin` and `fMax`;
/// - `log(mel + 1e-6)`.
///
/// The output is `[nMels, frames]`, mel-major, so a batch is `[N, 1, nMels, frames]` for a 2-d
/// encoder. Holds scratch buffers: one instance per thread.
public final class LogMelSpectrogram {
  public let sampleRate: Int
  public let nFFT: Int
  public let hop: Int
  public let nMels: Int
  public let fMin: Double
  public let fMax: Double
  /// Added before the log.
  public let floor: Float = 1e-6

  /// [nMels, nFFT/2 + 1] triangular filters.
  public let filterbank: [Float]
  /// [nFFT] periodic Hann window.
  public let window: [Float]
  private let fft: RealFFT
  private var frame: [Float]
  private var power: [Float]
  private var scratch: [Float]

  public init(sampleRate: Int = 16000, nFFT: Int = 512, hop: Int = 160, nMels: Int = 64, fMin: Double = 0, fMax: Double? = nil) {
    precondition(hop > 0 && nMels > 0, "LogMelSpectrogram needs a positive hop and mel count")
    self.sampleRate = sampleRate
    self.nFFT = nFFT
    self.hop = hop
    self.nMels = nMels
    self.fMin = fMin
    self.fMax = fMax ?? Double(sampleRate) / 2
    fft = RealFFT(size: nFFT)
    window = (0..<nFFT).map { Float(0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(nFFT))) }
    filterbank = Self.melFilterbank(
      sampleRate: sampleRate, nFFT: nFFT, nMels: nMels, fMin: fMin, fMax: fMax ?? Double(sampleRate) / 2)
    frame = [Float](repeating: 0, count: nFFT)
    power = [Float](repeating: 0, count: nFFT / 2 + 1)
    scratch = [Float](repeating: 0, count: nFFT + 2)
  }

  /// HTK mel of a frequency in Hz.
  public static func hzToMel(_ f: Double) -> Double { 2595 * log10(1 + f / 700) }
  /// Inverse of `hzToMel`.
  public static func melToHz(_ m: Double) -> Double { 700 * (pow(10, m / 2595) - 1) }

  /// torchaudio's `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None,
  /// mel_scale="htk")`, transposed to [nMels, nFFT/2 + 1]: bin `k` at `k·sr/nFFT` Hz gets
  /// `max(0, min((f − f_m)/(f_{m+1} − f_m), (f_{m+2} − f)/(f_{m+2} − f_{m+1})))` in filter m.
  public static func melFilterbank(sampleRate: Int, nFFT: Int, nMels: Int, fMin: Double, fMax: Double) -> [Float] {
    let bins = nFFT / 2 + 1
    let lo = hzToMel(fMin), hi = hzToMel(fMax)
    let corners = (0..<(nMels + 2)).map { melToHz(lo + (hi - lo) * Double($0) / Double(nMels + 1)) }
    var fb = [Float](repeating: 0, count: nMels * bins)
    for m in 0..<nMels {
      let a = corners[m], b = corners[m + 1], c = corners[m + 2]
      for k in 0..<bins {
        let f = Double(sampleRate) / 2 * Double(k) / Double(bins - 1)
        let v = max(0, min((f - a) / (b - a), (c - f) / (c - b)))
        fb[m * bins + k] = Float(v)
      }
    }
    return fb
  }

  /// Frames for a signal of `count` samples: `1 + count/hop`.
  public func frameCount(_ count: Int) -> Int { 1 + count / hop }

  /// Writes the log-mel spectrogram of `x` [count] into `out` [nMels, frameCount(count)].
  public func compute(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Float>) {
    let frames = frameCount(count)
    let half = nFFT / 2, bins = nFFT / 2 + 1
    // Reflect padding (torchaudio's pad_mode="reflect"); falls back to zero beyond one reflection.
    @inline(__always) func sample(_ i: Int) -> Float {
      var j = i
      if j < 0 { j = -j }
      if j >= count { j = 2 * (count - 1) - j }
      return j >= 0 && j < count ? x[j] : 0
    }
    frame.withUnsafeMutableBufferPointer { fp in
      power.withUnsafeMutableBufferPointer { pp in
        scratch.withUnsafeMutableBufferPointer { sp in
          filterbank.withUnsafeBufferPointer { fbp in
            for t in 0..<frames {
              let start = t * hop - half
              for i in 0..<nFFT { fp[i] = sample(start + i) * window[i] }
              fft.powerSpectrum(fp.baseAddress!, into: pp.baseAddress!, scratch: sp.baseAddress!)
              for m in 0..<nMels {
                let row = fbp.baseAddress! + m * bins
                var acc: Float = 0
                for k in 0..<bins { acc += row[k] * pp[k] }
                out[m * frames + t] = logf(acc + floor)
              }
            }
          }
        }
      }
    }
  }

  /// The spectrogram as an array [nMels, frames].
  public func callAsFunction(_ x: [Float]) -> [Float] {
    var out = [Float](repeating: 0, count: nMels * frameCount(x.count))
    x.withUnsafeBufferPointer { compute($0.baseAddress!, count: x.count, into: &out) }
    return out
  }
}
