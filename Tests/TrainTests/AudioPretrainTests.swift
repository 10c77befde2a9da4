import Foundation
import Model
import XCTest

/// Audio pretraining end to end on a tiny spoken-digit corpus (2 languages × 2 voices × 10
/// digits = 40 clips) and synthetic 4-second clips (`tones`, which the samplecnn gradient test
/// in `GradientInvarianceTests` reads): the log-mel resnet18 path through pretraining, W ranks ≡
/// 1 rank under LARS, `--probe` and `parallax eval`.
final class AudioPretrainTests: XCTestCase {
  /// One corpus for the whole class (espeak-ng takes a second or two).
  static let corpus: String = {
    let dir = Processes.temporaryDirectory("audio-corpus")
    let r = try? Processes.run(
      Processes.parallax,
      ["data", "spoken-digits", "--out", dir, "--languages", "fr", "es", "--voices", "2", "--speeds", "160", "--jobs", "2"],
      timeout: 120)
    precondition(r?.status == 0, "spoken-digits failed: \(r?.stderr ?? "")")
    return dir
  }()

  @discardableResult
  func pretrain(np: Int, name: String, extra: [String]) throws -> (dir: String, stdout: String) {
    let dir = Processes.temporaryDirectory(name)
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--data", "spoken-digits", "--data-dir", Self.corpus, "--global-batch", "8",
        "--warmup-steps", "1", "--seed", "5", "--threads", "1", "--run-dir", dir,
      ] + extra, timeout: 600)
    XCTAssertEqual(r.status, 0, "np \(np) failed:\n\(r.stdout)\n\(r.stderr)")
    return (dir, r.stdout)
  }

  func tensors(_ dir: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: dir + "/model.safetensors")).entries
  }

  /// 40 synthetic 4-second clips (a tone per word plus keyed noise, 16-bit 16 kHz WAV) with
  /// `manifest.csv` (`path,word,language`): samplecnn's 59049-sample views are then all signal.
  /// (The spoken digits last under a second: their views are ~80% zero padding, constant
  /// regions that make samplecnn's BN statistics and max-pool ties ill-conditioned.)
  static let tones: String = {
    let dir = Processes.temporaryDirectory("audio-tones")
    var manifest = "path,word,language\n"
    let rate = 16000, n = 4 * rate
    for clip in 0..<40 {
      var pcm = [Int16](repeating: 0, count: n)
      var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(clip + 1)
      let f = 200 + 37 * Double(clip)
      for i in 0..<n {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let noise = Double(Int64(bitPattern: state >> 11) - (1 << 52)) / Double(1 << 52)
        pcm[i] = Int16(8000 * sin(2 * .pi * f * Double(i) / Double(rate)) + 3000 * noise)
      }
      var wav = Foundation.Data("RIFF".utf8)
      func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { wav.append(contentsOf: $0) } }
      le(UInt32(36 + 2 * n))
      wav.append(contentsOf: Array("WAVEfmt ".utf8))
      le(UInt32(16)); le(UInt16(1)); le(UInt16(1)); le(UInt32(rate)); le(UInt32(2 * rate)); le(UInt16(2)); le(UInt16(16))
      wav.append(contentsOf: Array("data".utf8))
      le(UInt32(2 * n))
      for v in pcm { le(v) }
      try! wav.write(to: URL(fileURLWithPath: "\(dir)/t\(clip).wav"))
      manifest += "t\(clip).wav,\(clip % 10),\(clip % 2)\n"
    }
    try! manifest.write(toFile: "\(dir)/manifest.csv", atomically: true, encoding: .utf8)
    return dir
  }()

  /// ‖a − b‖ / ‖a‖ over all tensors together.
  func overallDifference(_ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry]) -> Double {
    var num = 0.0, den = 0.0
    for (k, ea) in a {
      guard let eb = b[k] else { continue }
      for i in 0..<ea.values.count {
        num += (Double(ea.values[i]) - Double(eb.values[i])) * (Double(ea.values[i]) - Double(eb.values[i]))
        den += Double(ea.values[i]) * Double(ea.values[i])
      }
    }
    return num.squareRoot() / max(den.squareRoot(), 1e-12)
  }

  // samplecnn's W ranks ≡ 1 rank (CLMR on the tone clips) is compared on the SGD gradient of
  // one step in `GradientInvarianceTests.testSampleCNNAudioGradientsAreRankInvariant`: every
  // tensor, BN shifts included, within the absolute rounding-noise bound. (The LARS two-step
  // comparison it replaces had to give the BN shifts 5e-2: LARS cannot see weight gradients,
  // and step 2 adds max-pool tie luck.)

  /// CLMR-style SimCLR on spoken digits as log-mel spectrograms (resnet18, CLMR augmentations):
  /// 2 ranks with 4 clips each give the parameters of 1 rank with all 8, to 1e-4.
  func testLogMelResNet18TwoRanksMatchOneRank() throws {
    let extra = [
      "--model", "resnet18", "--front-end", "logmel", "--audio-length", "4000", "--n-fft", "256", "--hop", "250",
      "--n-mels", "16", "--max-steps", "2", "--augment-preset", "clmr", "--checkpoint-every", "1", "--keep", "3",
    ]
    let one = try pretrain(np: 1, name: "mel-rank1", extra: extra).dir
    let two = try pretrain(np: 2, name: "mel-rank2", extra: extra).dir
    let (rel, name) = relativeDifference(try latestModel(one), try latestModel(two))
    XCTAssertLessThanOrEqual(rel, 1e-4, "worst tensor \(name)")
    // The second step moved the parameters of the same run (same seed, one step against
    // two), every weight tensor included — not only BN biases or running statistics.
    let afterOne = try tensors(one + "/step-00000001"), afterTwo = try tensors(one + "/step-00000002")
    XCTAssertGreaterThan(overallDifference(afterOne, afterTwo), 1e-5)
    let weights = afterTwo.keys.filter { $0.hasSuffix(".weight") && afterTwo[$0]!.shape.count > 1 }
    XCTAssertGreaterThan(weights.count, 10)
    for k in weights { XCTAssertNotEqual(afterOne[k]!.values, afterTwo[k]!.values, "\(k) did not move at step 2") }
  }

  /// resnet18 on 16 × 17 log-mel spectrograms (MT-SLVR augmentations) under 2 ranks with
  /// `--probe`, then `eval linear` and `eval fewshot` on its checkpoint.
  func testLogMelResNet18PretrainProbeAndEval() throws {
    let (dir, out) = try pretrain(
      np: 2, name: "mel-w2",
      extra: [
        "--model", "resnet18", "--front-end", "logmel", "--audio-length", "4000", "--n-fft", "256", "--hop", "250",
        "--n-mels", "16", "--max-steps", "1", "--augment-preset", "mtslvr", "--probe", "--probe-epochs", "3",
      ])
    XCTAssertTrue(out.contains("| features | dim | word accuracy | language accuracy | probe time |"), out)
    XCTAssertTrue(out.contains("| random resnet18 (pooled) | 512 |"), out)
    XCTAssertTrue(out.contains("| majority class | - |"), out)

    let linear = try Processes.parallax(np: 2, ["eval", "linear", "--checkpoint", dir + "/latest", "--epochs", "3", "--threads", "1"])
    XCTAssertEqual(linear.status, 0, linear.stdout + linear.stderr)
    for slot in ["word", "language", "voice"] {
      XCTAssertTrue(linear.stdout.contains("linear simclr resnet18 (pooled) \(slot): "), linear.stdout)
    }
    let fewshot = try Processes.parallax(
      np: 1,
      ["eval", "fewshot", "--checkpoint", dir + "/latest", "--queries", "3", "--tasks", "20", "--labels", "word", "language"])
    XCTAssertEqual(fewshot.status, 0, fewshot.stdout + fewshot.stderr)
    XCTAssertTrue(fewshot.stdout.contains("word: 5-way 1-shot"), fewshot.stdout)
    XCTAssertTrue(fewshot.stdout.contains("language: 2-way 1-shot"), fewshot.stdout)
    XCTAssertTrue(fewshot.stdout.contains("(20 tasks)"), fewshot.stdout)
    // One evaluation path for images and audio: k-NN reads the clips' label slots too, and an
    // unknown slot is an error naming it and the data's slots.
    let knn = try Processes.parallax(np: 1, ["eval", "knn", "--checkpoint", dir + "/latest", "--k", "3", "--labels", "word", "gender"])
    XCTAssertEqual(knn.status, 0, knn.stdout + knn.stderr)
    XCTAssertTrue(knn.stdout.contains("knn k=3 pooled word: "), knn.stdout)
    XCTAssertTrue(knn.stdout.contains("knn k=3 pooled gender: "), knn.stdout)
    let bad = try Processes.parallax(np: 1, ["eval", "knn", "--checkpoint", dir + "/latest", "--labels", "colour"])
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("no label 'colour'") && bad.stderr.contains("word, language, voice, gender"), bad.stderr)
  }

  func testBadAudioSettingsAreRefused() throws {
    let short = try Processes.parallax(
      np: 1, ["pretrain", "--data", "spoken-digits", "--data-dir", Self.corpus, "--model", "samplecnn", "--audio-length", "16000"])
    XCTAssertNotEqual(short.status, 0)
    XCTAssertTrue(short.stderr.contains("samplecnn needs audio-length"), short.stderr)
    let missing = try Processes.parallax(
      np: 1, ["pretrain", "--data", "spoken-digits", "--data-dir", "/nonexistent/digits", "--model", "samplecnn", "--max-steps", "1"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("/nonexistent/digits"), missing.stderr)
  }
}
