import CSndFile
import Foundation
import XCTest

@testable import Data

final class AudioDecoderTests: XCTestCase {
  /// WAV, FLAC and OGG written by sox (44.1 kHz stereo, 440 Hz) decode to mono at 16 kHz with
  /// the right length and frequency.
  func testSoxFilesDecodeAndResample() throws {
    let dir = try TestSupport.makeTempDirectory()
    for ext in ["wav", "flac", "ogg"] {
      let path = "\(dir)/tone.\(ext)"
      try AudioTestSupport.run("sox", ["-n", "-r", "44100", "-c", "2", path, "synth", "0.5", "sine", "440"])
      let info = try AudioDecoder.info(path)
      XCTAssertEqual(info.sampleRate, 44100, ext)
      XCTAssertEqual(info.channels, 2, ext)
      let clip = try AudioDecoder.decode(path, sampleRate: 16000)
      XCTAssertEqual(clip.sampleRate, 16000)
      XCTAssertEqual(clip.samples.count, 8000, accuracy: 2, ext)
      let f = WaveDSP.zeroCrossingFrequency(Array(clip.samples[500..<7500]), sampleRate: 16000)
      XCTAssertEqual(f, 440, accuracy: 1, ext)
    }
  }

  /// libsndfile round trip: 16-bit WAV and FLAC keep the samples to 1/32767; stereo averages.
  func testRoundTripAndChannelAverage() throws {
    let dir = try TestSupport.makeTempDirectory()
    let x = AudioTestSupport.sine(1000, sampleRate: 8000, count: 800, amplitude: 0.7)
    for (ext, format) in [("wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16), ("flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16)] {
      let path = "\(dir)/x.\(ext)"
      try AudioDecoder.write(x, sampleRate: 8000, to: path, format: Int32(format))
      let clip = try AudioDecoder.decode(path)
      XCTAssertEqual(clip.sampleRate, 8000)
      XCTAssertEqual(clip.samples.count, x.count)
      for i in 0..<x.count { XCTAssertEqual(clip.samples[i], x[i], accuracy: 1.0 / 32767, ext) }
    }
    // Stereo with opposite channels averages to zero.
    let stereo = "\(dir)/stereo.wav"
    try AudioTestSupport.run("sox", ["-n", "-r", "8000", "-c", "1", "\(dir)/l.wav", "synth", "0.1", "sine", "300"])
    try AudioTestSupport.run("sox", ["\(dir)/l.wav", "-c", "2", stereo, "remix", "1", "1v-1"])
    let mono = try AudioDecoder.decode(stereo).samples
    XCTAssertLessThan(mono.map { abs($0) }.max()!, 1e-3)
  }

  /// MP3 decodes when this libsndfile has MPEG support (Debian 12's does): written by
  /// libsndfile itself (LAME), since sox lacks an MP3 handler.
  func testMP3WhenSupported() throws {
    guard AudioDecoder.supportedFormats().contains(where: { $0.0 == "mp3" || $0.1.contains("MPEG") }) else {
      throw XCTSkip("this libsndfile has no MPEG support")
    }
    let dir = try TestSupport.makeTempDirectory()
    let path = "\(dir)/tone.mp3"
    let x = AudioTestSupport.sine(440, sampleRate: 44100, count: 44100 / 2)
    try AudioDecoder.write(x, sampleRate: 44100, to: path, format: Int32(SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III))
    let clip = try AudioDecoder.decode(path, sampleRate: 16000)
    XCTAssertGreaterThan(clip.samples.count, 7000)
    let f = WaveDSP.zeroCrossingFrequency(Array(clip.samples[2000..<6000]), sampleRate: 16000)
    XCTAssertEqual(f, 440, accuracy: 2)
  }

  /// A corrupt file and a zero-length file give errors that name the file.
  func testBadFilesNameThePath() throws {
    let dir = try TestSupport.makeTempDirectory()
    let corrupt = "\(dir)/corrupt.wav"
    try TestSupport.write(Array("RIFF\u{1}\u{0}\u{0}\u{0}WAVEjunkjunkjunkjunk".utf8) + [UInt8](repeating: 7, count: 100), to: corrupt)
    let empty = "\(dir)/empty.flac"
    try TestSupport.write([], to: empty)
    for (path, kind) in [(corrupt, "cannot decode"), (empty, "empty")] {
      XCTAssertThrowsError(try AudioDecoder.decode(path)) { error in
        XCTAssertTrue("\(error)".contains(path), "\(error)")
        XCTAssertTrue("\(error)".contains(kind), "\(error)")
      }
    }
    XCTAssertThrowsError(try AudioDecoder.decode("\(dir)/missing.wav")) {
      XCTAssertTrue("\($0)".contains("missing.wav"))
    }
  }

  /// A folder per class: bad files fail the load naming the file, or are skipped and counted.
  func testFolderPerClassWithBadFilePolicy() throws {
    let dir = try TestSupport.makeTempDirectory()
    for (c, f) in [("high", 2000), ("low", 200)] {
      try FileManager.default.createDirectory(atPath: "\(dir)/\(c)", withIntermediateDirectories: true)
      for k in 0..<2 {
        try AudioDecoder.write(AudioTestSupport.sine(Double(f + k), sampleRate: 8000, count: 400), sampleRate: 8000, to: "\(dir)/\(c)/\(k).wav")
      }
    }
    let good = try AudioFileDataset.folderPerClass(root: dir, sampleRate: 8000)
    XCTAssertEqual(good.count, 4)
    XCTAssertEqual(good.classNames, [["high", "low"]])
    XCTAssertEqual(good.labels(slot: 0), [0, 0, 1, 1])
    XCTAssertEqual(try good.samples(3).count, 400)

    try TestSupport.write([], to: "\(dir)/low/zero.wav")
    try TestSupport.write([UInt8](repeating: 1, count: 64), to: "\(dir)/high/bad.ogg")
    XCTAssertThrowsError(try AudioFileDataset.folderPerClass(root: dir, sampleRate: 8000)) {
      XCTAssertTrue("\($0)".contains("bad.ogg") || "\($0)".contains("zero.wav"), "\($0)")
    }
    let skipping = try AudioFileDataset.folderPerClass(root: dir, sampleRate: 8000, onBadFile: .skip)
    XCTAssertEqual(skipping.count, 4)
    XCTAssertEqual(skipping.skipped.count, 2)
    XCTAssertEqual(Set(skipping.skipped.map { ($0.path as NSString).lastPathComponent }), ["bad.ogg", "zero.wav"])
  }
}
