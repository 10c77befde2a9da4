import XCTest

@testable import Data

final class LogMelTests: XCTestCase {
  /// HTK mel values by hand: mel(700) = 2595·log10(2) = 781.17; mel(1000) ≈ 999.99.
  func testHTKScale() {
    XCTAssertEqual(LogMelSpectrogram.hzToMel(700), 2595 * log10(2.0), accuracy: 1e-9)
    XCTAssertEqual(LogMelSpectrogram.hzToMel(1000), 999.985, accuracy: 1e-3)
    XCTAssertEqual(LogMelSpectrogram.melToHz(LogMelSpectrogram.hzToMel(3210)), 3210, accuracy: 1e-9)
  }

  /// A filterbank small enough to check by hand: sr 8000, nFFT 8 (bins at 0, 1000, …, 4000 Hz),
  /// one mel band between 0 and 4000 Hz: corners at 0, mel⁻¹(mel(4000)/2) = 1113.8 Hz, 4000 Hz.
  func testFilterbankByHand() {
    let fb = LogMelSpectrogram.melFilterbank(sampleRate: 8000, nFFT: 8, nMels: 1, fMin: 0, fMax: 4000)
    let centre = LogMelSpectrogram.melToHz(LogMelSpectrogram.hzToMel(4000) / 2)
    XCTAssertEqual(centre, 1113.8, accuracy: 0.1)  // mel(4000) = 2146.1; 700·(10^(1073.1/2595) − 1)
    let expected: [Double] = [0, 1000 / centre, (4000 - 2000) / (4000 - centre), (4000 - 3000) / (4000 - centre), 0]
    for k in 0..<5 { XCTAssertEqual(Double(fb[k]), expected[k], accuracy: 1e-6, "bin \(k)") }
  }

  /// A 1 kHz tone lights the mel band whose centre is nearest 1 kHz, in every frame; the frame
  /// count is 1 + L/hop.
  func testToneLandsInItsBand() {
    let sr = 16000
    let mel = LogMelSpectrogram(sampleRate: sr, nFFT: 512, hop: 160, nMels: 40)
    let x = AudioTestSupport.sine(1000, sampleRate: sr, count: 8000)
    let s = mel(x)
    let frames = mel.frameCount(8000)
    XCTAssertEqual(frames, 51)
    XCTAssertEqual(s.count, 40 * frames)
    let lo = LogMelSpectrogram.hzToMel(0), hi = LogMelSpectrogram.hzToMel(8000)
    let centres = (1...40).map { LogMelSpectrogram.melToHz(lo + (hi - lo) * Double($0) / 41) }
    let nearest = centres.enumerated().min { abs($0.element - 1000) < abs($1.element - 1000) }!.offset
    for t in [0, 25, 50] {
      let column = (0..<40).map { s[$0 * frames + t] }
      XCTAssertEqual(column.enumerated().max { $0.element < $1.element }!.offset, nearest, "frame \(t)")
    }
    // Silence gives log(1e-6).
    let quiet = mel([Float](repeating: 0, count: 1600))
    XCTAssertEqual(quiet[0], logf(1e-6), accuracy: 1e-4)
  }
}

final class AudioEvalLoaderTests: XCTestCase {
  func testCentreCropAndSpectrogramBatch() throws {
    let ds = try AudioFileDataset.manifest(csv: "\(TinyCorpus.directory)/manifest.csv", sampleRate: 16000)
    let L = 16000
    let loader = AudioEvalLoader(source: ds, length: L)
    var x = [Float](repeating: .nan, count: 2 * L)
    try loader.load(indices: [3, 30], into: &x)
    let clip = try ds.samples(30)
    let pad = (L - clip.count) / 2
    XCTAssertGreaterThan(pad, 0)
    XCTAssertEqual(Array(x[(L + pad)..<(L + pad + clip.count)]), clip)
    XCTAssertTrue(x[L..<(L + pad)].allSatisfy { $0 == 0 })
    XCTAssertEqual(loader.labels(indices: [3, 30], slot: 0), [3, 0])

    let mel = LogMelSpectrogram(sampleRate: 16000, nFFT: 512, hop: 256, nMels: 32)
    let per = 32 * mel.frameCount(L)
    var s = [Float](repeating: .nan, count: 2 * per)
    try loader.loadSpectrograms(indices: [3, 30], mel: mel, into: &s)
    var t = [Float](repeating: .nan, count: 2 * per)
    mel.batch(x, rows: 2, length: L, into: &t)
    XCTAssertEqual(s, t)
    XCTAssertEqual(Array(s[per...]), mel(Array(x[L...])))
  }
}
