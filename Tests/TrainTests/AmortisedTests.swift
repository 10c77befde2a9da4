import Foundation
import Model
import XCTest

/// Amortised invariance learning (issue 16): W ranks ≡ 1 rank on the step-1 gradient under
/// plain SGD (v is drawn per sample, so the same on any rank count), exact resume, the
/// checkpoint read back by `eval amortised`, and configuration errors naming the flag.
final class AmortisedTests: XCTestCase {
  static let base = ["--method", "amortised", "--model", "conv4", "--global-batch", "12", "--seed", "3", "--projection-dim", "32"]

  func testSGDGradientOfTwoRanksIsOneRanks() throws {
    for draw in ["corners", "uniform"] {
      let args = Self.base + ["--invariance-draw", draw]
      let (g1, p1, _) = try sgdGradientStep(np: 1, name: "am1-\(draw)", args)
      let (g2, p2, _) = try sgdGradientStep(np: 2, name: "am2-\(draw)", args)
      assertSameTensors(g1, g2, rel: 2e-4, "amortised \(draw) gradient, 2 ranks")
      assertSameTensors(p1, p2, rel: 1e-4, "amortised \(draw) parameters, 2 ranks")
      // Every block's hypernetwork is trained: its output layer has a gradient.
      for i in 0..<4 {
        let g = g1["encoder.hyper\(i).2.weight"]
        XCTAssertNotNil(g, "encoder.hyper\(i).2.weight")
        XCTAssertGreaterThan(g?.values.map(abs).max() ?? 0, 1e-6, "encoder.hyper\(i).2.weight has no gradient")
      }
    }
  }

  /// Audio (issue 16's second modality): conv4 conditioned on v = (spectral, temporal) over
  /// log-mel spectrograms of spoken digits, each clip's v keyed by its global index — 2 ranks
  /// give one rank's SGD step; then `eval amortised` takes the corpus's label slots as its tasks
  /// and refuses the image tasks.
  func testAudioSGDGradientOfTwoRanksIsOneRanksAndEvalTakesLabelSlots() throws {
    let audio = [
      "--data", "spoken-digits", "--data-dir", AudioPretrainTests.corpus, "--sample-rate", "8000", "--audio-length", "8000",
      "--front-end", "logmel", "--n-fft", "256", "--hop", "250", "--n-mels", "16",
    ]
    let (g1, p1, dir) = try sgdGradientStep(np: 1, name: "am1-audio", Self.base + audio)
    let (g2, p2, _) = try sgdGradientStep(np: 2, name: "am2-audio", Self.base + audio)
    assertSameTensors(g1, g2, rel: 2e-4, "amortised audio gradient, 2 ranks")
    assertSameTensors(p1, p2, rel: 1e-4, "amortised audio parameters, 2 ranks")
    XCTAssertGreaterThan(g1["encoder.hyper0.2.weight"]?.values.map(abs).max() ?? 0, 1e-6, "the hypernetworks train on audio")

    let common = ["eval", "amortised", "--checkpoint", dir + "/latest", "--epochs", "1", "--probe-epochs", "2", "--threads", "1"]
    let r = try Processes.run(Processes.parallax, common + ["--labels", "word", "voice", "--no-corners"], timeout: 300)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    XCTAssertTrue(r.stdout.contains("v = (spectral, temporal)"), r.stdout)
    for task in ["word", "voice"] {
      XCTAssertTrue(r.stdout.contains("task \(task): learned v ("), r.stdout)
      XCTAssertTrue(r.stdout.contains("task \(task): probe at learned v ("), r.stdout)
    }
    let bad = try Processes.run(Processes.parallax, common + ["--task", "rotation"], timeout: 120)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("--task is for image checkpoints"), bad.stderr)
  }

  /// MoCo-v2 on the conditioned encoder: 2 ranks ≡ 1 rank on the SGD step (each sample's v
  /// conditions its query and its key), the key network with its hypernetworks and the queue
  /// are the method's state, `eval amortised` learns v on the checkpoint, and shuffling BN is
  /// refused.
  func testMoCoObjectiveIsRankInvariantAndEvaluates() throws {
    let args = Self.base + ["--amortised-objective", "moco", "--queue-size", "64"]
    let (g1, p1, dir) = try sgdGradientStep(np: 1, name: "am1-moco", args)
    let (g2, p2, _) = try sgdGradientStep(np: 2, name: "am2-moco", args)
    assertSameTensors(g1, g2, rel: 2e-4, "amortised moco gradient, 2 ranks")
    assertSameTensors(p1, p2, rel: 1e-4, "amortised moco parameters, 2 ranks")
    XCTAssertGreaterThan(g1["encoder.hyper3.2.weight"]?.values.map(abs).max() ?? 0, 1e-6, "the hypernetworks train")
    let state = try SafeTensors.read(URL(fileURLWithPath: dir + "/latest/method.safetensors")).entries
    XCTAssertNotNil(state["target.encoder.hyper0.0.weight"], "the key network's hypernetworks are method state")
    XCTAssertNotNil(state["queue"])
    let r = try Processes.run(
      Processes.parallax,
      [
        "eval", "amortised", "--checkpoint", dir + "/latest", "--task", "rotation", "--limit", "256", "--epochs", "1",
        "--probe-epochs", "2", "--no-corners", "--threads", "1",
      ], timeout: 300)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    XCTAssertTrue(r.stdout.contains("task rotation: learned v ("), r.stdout)
    let bad = try Processes.run(
      Processes.parallax,
      ["pretrain", "--max-steps", "1", "--run-dir", Processes.temporaryDirectory("am-moco-bad"), "--key-bn", "shuffle"] + args,
      timeout: 120)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("--key-bn must be sync"), bad.stderr)
  }

  func pretrain(np: Int, dir: String, _ extra: [String]) throws {
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--method", "amortised", "--global-batch", "8", "--max-steps", "4", "--checkpoint-every", "2",
        "--warmup-steps", "1", "--seed", "5", "--threads", "1", "--projection-dim", "32", "--run-dir", dir,
      ] + extra, timeout: 300)
    XCTAssertEqual(r.status, 0, "np \(np) \(extra) failed:\n\(r.stdout)\n\(r.stderr)")
  }

  func bytes(_ path: String) throws -> Foundation.Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  /// 2 steps + resume + 2 steps equals 4 steps bit for bit (parameters with the hypernetworks,
  /// optimizer buffers), at 2 ranks; then `eval amortised` reads the checkpoint back: it
  /// learns a v in (0, 1)² for a task and probes every corner.
  func testResumeIsBitIdenticalAndEvalReadsTheCheckpoint() throws {
    let whole = Processes.temporaryDirectory("am-whole")
    let parts = Processes.temporaryDirectory("am-parts")
    try pretrain(np: 2, dir: whole, [])
    try pretrain(np: 2, dir: parts, ["--stop-after", "2"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: parts + "/step-00000004"))
    try pretrain(np: 2, dir: parts, ["--resume", "latest"])
    for file in ["model.safetensors", "optimizer.safetensors"] {
      XCTAssertEqual(
        try bytes(whole + "/step-00000004/" + file), try bytes(parts + "/step-00000004/" + file), "\(file) differs after resume")
    }
    // Steps 3–4 changed the hypernetworks (so the comparison can fail).
    let mid = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000002/model.safetensors")).entries
    let end = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000004/model.safetensors")).entries
    XCTAssertNotEqual(mid["encoder.hyper0.0.weight"]?.values, end["encoder.hyper0.0.weight"]?.values)

    let r = try Processes.run(
      Processes.parallax,
      [
        "eval", "amortised", "--checkpoint", whole + "/latest", "--task", "rotation", "--limit", "512", "--epochs", "1",
        "--probe-epochs", "2", "--threads", "1",
      ], timeout: 300)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    let lines = r.stdout.split(separator: "\n").map(String.init)
    XCTAssertEqual(lines.filter { $0.contains("probe at corner") }.count, 4, r.stdout)
    guard let learned = lines.first(where: { $0.contains("learned v (") }) else { return XCTFail(r.stdout) }
    // "learned v (a, s)": both in (0, 1) and moved from 0.5 (Adam's first step alone moves u by 0.05).
    let inner = learned.components(separatedBy: "learned v (")[1].components(separatedBy: ")")[0]
    let v = inner.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
    XCTAssertEqual(v.count, 2, learned)
    for x in v {
      XCTAssertGreaterThan(x, 0, learned)
      XCTAssertLessThan(x, 1, learned)
      XCTAssertNotEqual(x, 0.5, learned)
    }
  }

  /// Configurations the method cannot run are refused before training, naming the flag.
  func testUnsupportedConfigurationsAreRefused() throws {
    let cases: [([String], String)] = [
      (["--model", "resnet18"], "--model must be conv4"),
      (["--augment-sampling", "simclr"], "--augment-sampling must be auto"),
    ]
    for (extra, message) in cases {
      let dir = Processes.temporaryDirectory("am-bad")
      let r = try Processes.run(
        Processes.parallax, ["pretrain", "--method", "amortised", "--max-steps", "1", "--run-dir", dir] + extra, timeout: 120)
      XCTAssertNotEqual(r.status, 0, "\(extra)")
      XCTAssertTrue(r.stderr.contains(message), "\(extra): \(r.stderr)")
    }
  }
}
