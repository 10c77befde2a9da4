import Foundation
import Model
import XCTest

/// `--layerwise` (issue 15): conv6 stage k trains with its mirrored decoder stage while the
/// stages below are frozen — no gradient, no optimizer update — and the stages above wait.
final class LayerwiseTests: XCTestCase {
  /// The ranges each stage trains (`Conv6.stages`, `Conv6Decoder.stages`).
  static let stageParameters: [[String]] = [
    ["encoder.0", "encoder.2", "decoder.5", "decoder.6"],
    ["encoder.4", "encoder.6", "decoder.2", "decoder.3"],
    ["encoder.8", "decoder.0"],
  ]

  static func stage(of name: String) -> Int {
    let layer = name.components(separatedBy: ".").prefix(2).joined(separator: ".")
    return stageParameters.firstIndex { $0.contains(layer) }!
  }

  func pretrain(np: Int, dir: String, _ args: [String]) throws {
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--model", "conv6", "--layerwise", "--global-batch", "8", "--seed", "3", "--threads", "1",
        "--warmup-steps", "0", "--run-dir", dir, "--checkpoint-every", "1", "--keep", "20",
      ] + args, timeout: 300)
    XCTAssertEqual(r.status, 0, "np \(np) \(args):\n\(r.stdout)\n\(r.stderr)")
  }

  func model(_ dir: String, step: Int) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: dir + String(format: "/step-%08d/model.safetensors", step))).entries
  }

  /// One plain-SGD step of each stage (stage-steps 1): the gradient summed over 2 ranks is one
  /// rank's, every range outside the step's stage has a gradient of exactly 0, and the
  /// parameters after each step agree.
  func testLayerwiseSGDStepOfTwoRanksIsOneRanks() throws {
    for method in [["--method", "ae"], ["--method", "parallel-dae", "--embedding-loss", "mse", "--alpha", "10"]] {
      var grads: [[[String: SafeTensors.Entry]]] = []
      var dirs: [String] = []
      for np in [1, 2] {
        let dir = Processes.temporaryDirectory("layerwise-sgd\(np)")
        let dump = dir + "/grads.safetensors"
        try pretrain(
          np: np, dir: dir,
          method + [
            "--stage-steps", "1", "--optimizer", "sgd", "--base-lr", "2", "--lr-scaling", "none", "--momentum", "0",
            "--weight-decay", "0", "--debug-dump-gradients", dump, "--debug-dump-steps", "3",
          ])
        grads.append(try (1...3).map { s in
          try SafeTensors.read(URL(fileURLWithPath: s == 1 ? dump : dump + ".step-\(s)")).entries
        })
        dirs.append(dir)
      }
      let what = method.joined(separator: " ")
      for step in 1...3 {
        let stage = step - 1
        let (g1, g2) = (grads[0][step - 1], grads[1][step - 1])
        assertSameTensors(g1, g2, rel: 2e-4, "\(what) stage \(stage) gradient, 2 ranks")
        assertSameTensors(
          try model(dirs[0], step: step), try model(dirs[1], step: step), rel: 1e-4, "\(what) parameters after step \(step)")
        for (name, e) in g1 {
          if Self.stage(of: name) == stage {
            XCTAssertGreaterThan(e.values.map(abs).max()!, 0, "\(what): \(name) trains in stage \(stage)")
          } else {
            XCTAssertTrue(e.values.allSatisfy { $0 == 0 }, "\(what): \(name) has a gradient in stage \(stage)")
            XCTAssertTrue(g2[name]!.values.allSatisfy { $0 == 0 }, "\(what): \(name) has a gradient in stage \(stage), 2 ranks")
          }
        }
      }
    }
  }

  /// With momentum and weight decay (which would move a parameter whose gradient is 0 if the
  /// optimizer touched it), stage k's parameters stay bit-identical outside stage k: before it
  /// (waiting) and after it (frozen); and they do change during it. For SGD and for Adam (its
  /// moments would move them too). The checkpoints record the stage.
  func testFrozenStagesAreBitIdenticalAndCheckpointsRecordTheStage() throws {
    for optimizer in [
      ["--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "0.01", "--base-lr", "0.05"],
      ["--optimizer", "adam", "--weight-decay", "0.01", "--base-lr", "1e-3", "--lr-scaling", "none"],
    ] {
      let dir = Processes.temporaryDirectory("layerwise-frozen")
      try pretrain(np: 1, dir: dir, ["--method", "dae", "--stage-steps", "2"] + optimizer)
      let at = try (1...6).map { try model(dir, step: $0) }
      let what = optimizer[1]
      for (name, _) in at[0] where !name.hasSuffix("running_mean") {
        let k = Self.stage(of: name)
        // Stage k runs steps 2k+1 and 2k+2 (checkpoints at[2k], at[2k+1]).
        for s in 0..<6 where s != 2 * k && s != 2 * k + 1 {
          let before = s < 2 * k
          // Waiting stages hold their step-1 values (stage 0 has no earlier checkpoint);
          // frozen ones the values at the end of their stage.
          let reference = before ? at[0] : at[2 * k + 1]
          if before && k == 0 { continue }
          XCTAssertEqual(at[s][name]!.values, reference[name]!.values, "\(what): \(name) (stage \(k)) moved at step \(s + 1)")
        }
        XCTAssertNotEqual(at[2 * k + 1][name]!.values, (k == 0 ? at[0] : at[2 * k - 1])[name]!.values, "\(what): \(name) did not train in stage \(k)")
      }
      let state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/step-00000003/state.json"))) as! [String: Any]
      XCTAssertEqual(state["stage"] as? Int, 1, "\(what): step 3 is in stage 1")
      XCTAssertEqual(state["stageStep"] as? Int, 1, "\(what): one step of stage 1 done")
      let log = Jobs.read(dir + "/rank-0.log")
      XCTAssertTrue(log.contains("layer-wise stage 3 of 3 from step 5"), log)
    }
  }

  /// Stopped in the middle of stage 1 and resumed: bit-identical to the uninterrupted run;
  /// resuming with another stage length is refused before anything is written.
  func testResumeMidStageIsBitIdentical() throws {
    let whole = Processes.temporaryDirectory("layerwise-whole")
    let parts = Processes.temporaryDirectory("layerwise-parts")
    let args = ["--method", "parallel-ae", "--stage-steps", "2", "--optimizer", "adam", "--base-lr", "1e-3", "--lr-scaling", "none"]
    try pretrain(np: 1, dir: whole, args)
    try pretrain(np: 1, dir: parts, args + ["--stop-after", "3"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: parts + "/step-00000004"))
    let bad = try Processes.parallax(
      np: 1,
      [
        "pretrain", "--model", "conv6", "--layerwise", "--global-batch", "8", "--seed", "3", "--threads", "1",
        "--warmup-steps", "0", "--run-dir", parts, "--resume", "latest",
      ] + args.map { $0 == "2" ? "3" : $0 })
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains("stageSteps 2 (checkpoint) vs 3 (this run)"), bad.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: parts + "/step-00000004"))
    try pretrain(np: 1, dir: parts, args + ["--resume", "latest"])
    XCTAssertTrue(Jobs.read(parts + "/rank-0.log").contains("resumed from \(parts)/step-00000003 at step 3"))
    for file in ["model.safetensors", "optimizer.safetensors"] {
      let a = try Data(contentsOf: URL(fileURLWithPath: whole + "/step-00000006/" + file))
      let b = try Data(contentsOf: URL(fileURLWithPath: parts + "/step-00000006/" + file))
      XCTAssertEqual(a, b, "\(file) differs after resuming mid-stage")
    }
  }
}
