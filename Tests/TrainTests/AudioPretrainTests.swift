import Foundation
import Model
import XCTest

/// Audio pretraining end to end on a tiny spoken-digit corpus (2 languages × 2 voices × 10
/// digits = 40 clips): W ranks ≡ 1 rank for CLMR (SimCLR on raw waveforms with samplecnn),
/// and the log-mel resnet18 path through pretraining, `--probe` and `parallax eval`.
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

  func pretrain(np: Int, name: String, extra: [String]) throws -> String {
    let dir = Processes.temporaryDirectory(name)
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--data", "spoken-digits", "--data-dir", Self.corpus, "--global-batch", "8",
        "--warmup-steps", "1", "--seed", "5", "--threads", "1", "--run-dir", dir,
      ] + extra, timeout: 600)
    XCTAssertEqual(r.status, 0, "np \(np) failed:\n\(r.stdout)\n\(r.stderr)")
    return dir
  }

  func tensors(_ dir: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: dir + "/model.safetensors")).entries
  }

  /// max over tensors of ‖a − b‖ / ‖a‖.
  func relativeDifference(_ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry]) -> (Double, String) {
    var worst = (0.0, "")
    XCTAssertEqual(Set(a.keys), Set(b.keys))
    for (k, ea) in a {
      guard let eb = b[k] else { continue }
      var num = 0.0, den = 0.0
      for i in 0..<ea.values.count {
        let d = Double(ea.values[i]) - Double(eb.values[i])
        num += d * d
        den += Double(ea.values[i]) * Double(ea.values[i])
      }
      let rel = num.squareRoot() / max(den.squareRoot(), 1e-12)
      if rel > worst.0 { worst = (rel, k) }
    }
    return worst
  }

  /// CLMR: 2 ranks × 4 clips ≡ 1 rank × 8 clips after 2 steps of samplecnn on 59049-sample views.
  func testSampleCNNTwoRanksMatchOneRank() throws {
    let args = ["--model", "samplecnn", "--audio-length", "59049", "--max-steps", "2", "--checkpoint-every", "1", "--keep", "3"]
    let one = try pretrain(np: 1, name: "audio-w1", extra: args)
    let two = try pretrain(np: 2, name: "audio-w2", extra: args)
    let (rel, name) = relativeDifference(try tensors(one + "/latest"), try tensors(two + "/latest"))
    XCTAssertLessThanOrEqual(rel, 1e-4, "worst tensor \(name)")
    // The steps did change the parameters (a test that cannot fail is a defect).
    let first = try tensors(one + "/step-00000001")
    XCTAssertGreaterThan(relativeDifference(first, try tensors(one + "/latest")).0, 1e-6)
    let config = try String(contentsOfFile: one + "/config.yaml", encoding: .utf8)
    XCTAssertTrue(config.contains("frontEnd: raw"), config)
  }

  /// resnet18 on 32 × 33 log-mel spectrograms: 2 ranks ≡ 1 rank, then the probe table and
  /// `eval linear` / `eval fewshot` on the checkpoint.
  func testLogMelResNet18PretrainProbeAndEval() throws {
    let args = [
      "--model", "resnet18", "--front-end", "logmel", "--audio-length", "8000", "--n-fft", "256", "--hop", "250",
      "--n-mels", "32", "--max-steps", "2", "--augment-preset", "mtslvr",
    ]
    let one = try pretrain(np: 1, name: "mel-w1", extra: args)
    let two = try pretrain(np: 2, name: "mel-w2", extra: args)
    let (rel, name) = relativeDifference(try tensors(one + "/latest"), try tensors(two + "/latest"))
    XCTAssertLessThanOrEqual(rel, 1e-4, "worst tensor \(name)")

    let probeDir = Processes.temporaryDirectory("mel-probe")
    let probe = try Processes.parallax(
      np: 2,
      [
        "pretrain", "--data", "spoken-digits", "--data-dir", Self.corpus, "--global-batch", "8", "--threads", "1",
        "--run-dir", probeDir, "--probe", "--probe-epochs", "3", "--max-steps", "1",
      ] + args.filter { $0 != "--max-steps" && $0 != "2" }, timeout: 600)
    XCTAssertEqual(probe.status, 0, probe.stdout + probe.stderr)
    XCTAssertTrue(probe.stdout.contains("| features | dim | word accuracy | language accuracy | probe time |"), probe.stdout)
    XCTAssertTrue(probe.stdout.contains("| random resnet18 | 512 |"), probe.stdout)
    XCTAssertTrue(probe.stdout.contains("| majority class | - |"), probe.stdout)

    let linear = try Processes.parallax(np: 2, ["eval", "linear", "--checkpoint", one + "/latest", "--epochs", "3", "--threads", "1"])
    XCTAssertEqual(linear.status, 0, linear.stdout + linear.stderr)
    for slot in ["word", "language", "voice"] {
      XCTAssertTrue(linear.stdout.contains("linear simclr resnet18 (pooled) \(slot): "), linear.stdout)
    }
    let fewshot = try Processes.parallax(
      np: 1,
      ["eval", "fewshot", "--checkpoint", one + "/latest", "--queries", "3", "--tasks", "20", "--labels", "word", "language"])
    XCTAssertEqual(fewshot.status, 0, fewshot.stdout + fewshot.stderr)
    XCTAssertTrue(fewshot.stdout.contains("word: 5-way 1-shot"), fewshot.stdout)
    XCTAssertTrue(fewshot.stdout.contains("language: 2-way 1-shot"), fewshot.stdout)
    XCTAssertTrue(fewshot.stdout.contains("(20 tasks)"), fewshot.stdout)
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
