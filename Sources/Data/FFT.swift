#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A radix-2 real FFT of a fixed power-of-two size `n`.
///
/// The `n` real samples are packed as `n/2` complex values `z[k] = x[2k] + i·x[2k+1]`, one
/// iterative radix-2 complex FFT of size `n/2` runs on them, and a split step recovers the
/// `n/2 + 1` non-redundant bins: with `Z` the half-size transform,
/// `X[k] = (Z[k] + Z*[n/2−k])/2 − i·e^{−2πik/n}·(Z[k] − Z*[n/2−k])/2`.
/// `inverse` runs the same steps backwards and scales by `1/n`, so
/// `inverse(forward(x)) = x`. Twiddles are computed in `Double` once.
///
/// Holds scratch buffers: one instance per thread.
public final class RealFFT {
  /// Transform size `n` (a power of two, ≥ 2).
  public let size: Int
  /// Bins of the one-sided spectrum: `n/2 + 1`.
  public var bins: Int { size / 2 + 1 }

  private let half: Int
  /// [n/2] cos/sin(−2πk/(n/2)) for the complex stage.
  private let cosTable: [Float], sinTable: [Float]
  /// [n/2] cos/sin(−2πk/n) for the split step.
  private let splitCos: [Float], splitSin: [Float]
  /// [n/2] bit-reversal permutation of the complex stage.
  private let reversed: [Int32]
  /// [n/2] complex scratch.
  private var zr: [Float], zi: [Float]

  public init(size: Int) {
    precondition(size >= 2 && size & (size - 1) == 0, "RealFFT size \(size) is not a power of two ≥ 2")
    self.size = size
    half = size / 2
    let h = size / 2
    cosTable = (0..<h).map { Float(cos(-2 * Double.pi * Double($0) / Double(h))) }
    sinTable = (0..<h).map { Float(sin(-2 * Double.pi * Double($0) / Double(h))) }
    splitCos = (0..<h).map { Float(cos(-2 * Double.pi * Double($0) / Double(size))) }
    splitSin = (0..<h).map { Float(sin(-2 * Double.pi * Double($0) / Double(size))) }
    var bitsCount = 0
    while 1 << bitsCount < h { bitsCount += 1 }
    reversed = (0..<h).map { i in
      var r = 0
      for b in 0..<bitsCount where i & (1 << b) != 0 { r |= 1 << (bitsCount - 1 - b) }
      return Int32(r)
    }
    zr = [Float](repeating: 0, count: h)
    zi = [Float](repeating: 0, count: h)
  }

  /// In-place complex FFT of size `n/2` on (`re`, `im`); `inverse` conjugates the twiddles
  /// (no scaling).
  private func complexFFT(_ re: UnsafeMutablePointer<Float>, _ im: UnsafeMutablePointer<Float>, inverse: Bool) {
    let m = half
    for i in 0..<m {
      let j = Int(reversed[i])
      if j > i {
        swap(&re[i], &re[j])
        swap(&im[i], &im[j])
      }
    }
    let sign: Float = inverse ? -1 : 1
    var len = 2
    while len <= m {
      let step = m / len
      let hl = len / 2
      var start = 0
      while start < m {
        for k in 0..<hl {
          let wr = cosTable[k * step], wi = sign * sinTable[k * step]
          let a = start + k, b = a + hl
          let tr = re[b] * wr - im[b] * wi
          let ti = re[b] * wi + im[b] * wr
          re[b] = re[a] - tr
          im[b] = im[a] - ti
          re[a] += tr
          im[a] += ti
        }
        start += len
      }
      len <<= 1
    }
  }

  /// One-sided spectrum of `x` [n]: `re`, `im` [n/2 + 1], `X[k] = Σ_t x[t]·e^{−2πikt/n}`.
  public func forward(_ x: UnsafePointer<Float>, re: UnsafeMutablePointer<Float>, im: UnsafeMutablePointer<Float>) {
    let h = half
    zr.withUnsafeMutableBufferPointer { zrp in
      zi.withUnsafeMutableBufferPointer { zip in
        let a = zrp.baseAddress!, b = zip.baseAddress!
        for k in 0..<h {
          a[k] = x[2 * k]
          b[k] = x[2 * k + 1]
        }
        complexFFT(a, b, inverse: false)
        re[0] = a[0] + b[0]
        im[0] = 0
        re[h] = a[0] - b[0]
        im[h] = 0
        for k in 1..<max(h, 1) {
          let c = h - k
          // E = (Z[k] + conj Z[c]) / 2, O = (Z[k] − conj Z[c]) / (2i)
          let er = 0.5 * (a[k] + a[c]), ei = 0.5 * (b[k] - b[c])
          let or = 0.5 * (b[k] + b[c]), oi = -0.5 * (a[k] - a[c])
          let wr = splitCos[k], wi = splitSin[k]
          re[k] = er + wr * or - wi * oi
          im[k] = ei + wr * oi + wi * or
        }
      }
    }
  }

  /// The inverse of `forward`: `x` [n] from `re`, `im` [n/2 + 1] (the imaginary parts of bins
  /// 0 and n/2 are ignored), scaled by `1/n`.
  public func inverse(re: UnsafePointer<Float>, im: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>) {
    let h = half
    zr.withUnsafeMutableBufferPointer { zrp in
      zi.withUnsafeMutableBufferPointer { zip in
        let a = zrp.baseAddress!, b = zip.baseAddress!
        for k in 0..<h {
          let c = h - k
          // E = (X[k] + conj X[c]) / 2, O = (X[k] − conj X[c]) · e^{+2πik/n} / 2, Z = E + iO
          let er = 0.5 * (re[k] + re[c]), ei = 0.5 * (im[k] - im[c])
          let dr = 0.5 * (re[k] - re[c]), di = 0.5 * (im[k] + im[c])
          let wr = splitCos[k], wi = -splitSin[k]
          let or = dr * wr - di * wi, oi = dr * wi + di * wr
          a[k] = er - oi
          b[k] = ei + or
        }
        complexFFT(a, b, inverse: true)
        let scale = 1 / Float(h)
        for k in 0..<h {
          x[2 * k] = a[k] * scale
          x[2 * k + 1] = b[k] * scale
        }
      }
    }
  }

  /// `|X[k]|²` for the `n/2 + 1` bins of `x` [n]; `scratch` holds at least `n + 2` floats.
  public func powerSpectrum(
    _ x: UnsafePointer<Float>, into power: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>
  ) {
    let re = scratch, im = scratch + bins
    forward(x, re: re, im: im)
    for k in 0..<bins { power[k] = re[k] * re[k] + im[k] * im[k] }
  }

  /// The naive O(n²) DFT in `Double`, the oracle the tests compare `forward` with.
  public static func naiveDFT(_ x: [Float]) -> (re: [Double], im: [Double]) {
    let n = x.count
    var re = [Double](repeating: 0, count: n / 2 + 1), im = re
    for k in 0...(n / 2) {
      var sr = 0.0, si = 0.0
      for t in 0..<n {
        let phi = -2 * Double.pi * Double(k * t % n) / Double(n)
        sr += Double(x[t]) * cos(phi)
        si += Double(x[t]) * sin(phi)
      }
      re[k] = sr
      im[k] = si
    }
    return (re, im)
  }
}
