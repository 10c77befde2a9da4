import XCTest

@testable import Data

final class FFTTests: XCTestCase {
  /// The radix-2 real FFT equals the naive DFT for every size from 2 to 256.
  func testForwardMatchesNaiveDFT() {
    var rng = KeyedRandom(seed: 1, epoch: 0, sample: 0, purpose: .noise)
    for log2n in 1...8 {
      let n = 1 << log2n
      let x = (0..<n).map { _ in rng.uniform(-1, 1) }
      let fft = RealFFT(size: n)
      var re = [Float](repeating: 0, count: n / 2 + 1), im = re
      fft.forward(x, re: &re, im: &im)
      let (dr, di) = RealFFT.naiveDFT(x)
      var maxErr = 0.0, maxRef = 0.0
      for k in 0...(n / 2) {
        maxErr = max(maxErr, abs(Double(re[k]) - dr[k]), abs(Double(im[k]) - di[k]))
        maxRef = max(maxRef, abs(dr[k]), abs(di[k]))
      }
      XCTAssertLessThan(maxErr / maxRef, 1e-5, "n = \(n)")
    }
  }

  func testInverseRoundTrip() {
    let n = 512
    var rng = KeyedRandom(seed: 2, epoch: 0, sample: 0, purpose: .noise)
    let x = (0..<n).map { _ in rng.uniform(-1, 1) }
    let fft = RealFFT(size: n)
    var re = [Float](repeating: 0, count: n / 2 + 1), im = re
    fft.forward(x, re: &re, im: &im)
    var back = [Float](repeating: 0, count: n)
    fft.inverse(re: re, im: im, into: &back)
    for i in 0..<n { XCTAssertEqual(back[i], x[i], accuracy: 1e-5) }
  }

  /// A cosine at bin 5 puts n/2 into bin 5 and nothing elsewhere.
  func testPureToneLandsInItsBin() {
    let n = 64
    let x = (0..<n).map { Float(cos(2 * Double.pi * 5 * Double($0) / Double(n))) }
    let fft = RealFFT(size: n)
    var re = [Float](repeating: 0, count: n / 2 + 1), im = re
    fft.forward(x, re: &re, im: &im)
    for k in 0...(n / 2) {
      XCTAssertEqual(re[k], k == 5 ? Float(n / 2) : 0, accuracy: 1e-4, "bin \(k)")
      XCTAssertEqual(im[k], 0, accuracy: 1e-4, "bin \(k)")
    }
  }
}
