import Foundation
import Model
import XCTest

@testable import Train

/// Recon (Shi et al., ICLR 2023) in the supervised multi-task method (issue 17): the S-conflict
/// counts per layer, the branched encoder's step at 1, 2 and 3 ranks, and `parallax mtl
/// --recon-search` end to end.
final class ReconTests: XCTestCase {
  // MARK: Conflict scores

  /// Layers `a` (a.weight 2, a.bias 1) and `b` (b.weight 2, b.bias 2), three tasks:
  /// - `a`: task 0 (1, 0 | 1), task 1 (0, 0 | −2) — cosine −1/√2 only when the layer's two
  ///   tensors are taken together (task 1's weight part alone is zero); task 2 zero (no pair).
  /// - `b`: task 0 and 2 equal (cosine 1), task 1 orthogonal to both (cosine 0).
  func testConflictsCountPairsBelowTheThresholdPerLayer() throws {
    let arena = ParameterArena()
    _ = Linear(arena: arena, name: "a", inFeatures: 2, outFeatures: 1)
    _ = Linear(arena: arena, name: "b", inFeatures: 1, outFeatures: 2)
    let g: [Float] = [
      1, 0, 1, /* b */ 1, 0, 0, 0,
      0, 0, -2, /* b */ 0, 1, 0, 0,
      0, 0, 0, /* b */ 1, 0, 0, 0,
    ]
    func scores(_ threshold: Double, steps: Int = 1) -> LayerConflicts {
      let c = LayerConflicts(shared: arena.parameterRanges, tasks: 3, threshold: threshold)
      g.withUnsafeBufferPointer { p in
        for s in 1...steps {
          c.record(BalancingInput(tasks: 3, count: 7, gradients: p.baseAddress!, losses: [1, 1, 1], step: s, epoch: 0, seed: 0))
        }
      }
      return c
    }
    let zero = scores(0)
    XCTAssertEqual(zero.layers, ["a", "b"])
    XCTAssertEqual(zero.pairs, 3)
    XCTAssertEqual(zero.counts, [1, 0], "S = 0: only a's opposed pair; b's orthogonal pair is not below 0")
    XCTAssertEqual(scores(-0.7).counts, [1, 0], "−1/√2 < −0.7")
    XCTAssertEqual(scores(-0.71).counts, [0, 0], "−1/√2 > −0.71")
    let half = scores(0.5, steps: 2)
    XCTAssertEqual(half.steps, 2)
    XCTAssertEqual(half.counts, [2, 4], "S = 0.5: b's two orthogonal pairs, twice")
    XCTAssertEqual(half.ranked.map(\.layer), ["b", "a"])
    XCTAssertEqual(zero.ranked.map(\.layer), ["a", "b"])
  }

  // MARK: W ≡ 1 with the branched encoder

  static let branched =
    SupervisedMTLTests.multiFashion + ["--global-batch", "12", "--task-specific", "encoder.8,encoder.13"]

  /// One plain-SGD rlw step of the branched conv4 at 1, 2 and 3 ranks: gradients and
  /// parameters agree (RLW's weights are keyed by the step). The task copies are task t's
  /// own parameters: their gradient is wₜ times EW's, with the same wₜ as task t's head. And
  /// EW's step at 2 ranks is 1 rank's.
  func testBranchedStepOnTwoAndThreeRanksIsOneRanks() throws {
    let args = Self.branched + ["--mtl", "rlw"]
    let one = try sgdGradientStep(np: 1, name: "recon-rlw-1", args)
    for name in ["encoder.8.task0.weight", "encoder.8.task1.weight", "encoder.9.task1.weight", "encoder.13.task0.bias"] {
      XCTAssertNotNil(one.grads[name], name)
    }
    XCTAssertNil(one.grads["encoder.8.weight"])
    XCTAssertNotNil(one.grads["encoder.12.weight"], "encoder.12 stays shared")
    for np in [2, 3] {
      let many = try sgdGradientStep(np: np, name: "recon-rlw-\(np)", args)
      assertSameTensors(one.grads, many.grads, rel: 2e-4, "branched rlw gradient, \(np) ranks")
      assertSameTensors(one.params, many.params, rel: 1e-4, "branched rlw parameters after SGD, \(np) ranks")
    }
    let ew = try sgdGradientStep(np: 1, name: "recon-ew-1", Self.branched + ["--mtl", "ew"])
    // EW takes the fused backward and the bucketed sync overlapped with it (20 KiB buckets,
    // several per block): the branched encoder's progress reports must bound what is final.
    let ew2 = try sgdGradientStep(np: 2, name: "recon-ew-2", Self.branched + ["--mtl", "ew", "--bucket-mb", "0.02"])
    assertSameTensors(ew.grads, ew2.grads, rel: 2e-4, "branched ew gradient, 2 ranks")
    func ratio(_ name: String) -> Double {
      let a = ew.grads[name]!.values, b = one.grads[name]!.values
      let num = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
      let den = a.reduce(0.0) { $0 + Double($1) * Double($1) }
      XCTAssertGreaterThan(den, 0, name)
      let w = num / den
      for (x, y) in zip(a, b) { XCTAssertEqual(Double(y), w * Double(x), accuracy: 1e-7 + 1e-4 * abs(Double(x)), name) }
      return w
    }
    var weights: [Double] = []
    for (t, task) in ["left", "right"].enumerated() {
      let w = ratio("head.\(task).weight")
      weights.append(w)
      for name in ["encoder.8.task\(t).weight", "encoder.9.task\(t).weight", "encoder.13.task\(t).weight"] {
        XCTAssertEqual(ratio(name), w, accuracy: 1e-4 * abs(w), "\(name) is scaled as task \(t)'s head")
      }
    }
    XCTAssertGreaterThan(abs(weights[0] - weights[1]), 1e-3, "RLW drew equal weights \(weights)")
  }

  // MARK: parallax mtl --recon-search

  func json(_ path: String) throws -> [String: Any] {
    let data = try XCTUnwrap(FileManager.default.contents(atPath: path), path)
    return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], path)
  }

  /// The search at 2 ranks counts what one rank counts (the scores are of the summed task
  /// gradients); the layers it picks are the top ones of `recon.json`, and the final model
  /// is trained with exactly them task-specific.
  func testReconSearchPicksTheMostConflictingLayersAndTrainsThem() throws {
    let dir = Processes.temporaryDirectory("recon-search")
    let common = [
      "--data", "multi-fashion", "--global-batch", "16", "--optimizer", "sgd", "--base-lr", "0.05",
      "--lr-scaling", "none", "--momentum", "0.9", "--weight-decay", "0", "--warmup-steps", "0", "--threads", "1",
      "--seed", "2", "--recon-threshold", "0.5",
    ]
    let r = try Processes.parallax(
      np: 2, ["mtl", "--recon-search", "3", "--recon-layers", "2", "--max-steps", "2", "--run-dir", dir + "/recon"] + common,
      timeout: 600)
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    let recon = try json(dir + "/recon/recon.json")
    XCTAssertEqual(recon["steps"] as? Int, 3)
    XCTAssertEqual(recon["pairs_per_step"] as? Int, 1)
    let layers = try XCTUnwrap(recon["layers"] as? [[String: Any]])
    let counts = layers.compactMap { $0["conflicts"] as? Int }
    XCTAssertEqual(layers.count, 8, "conv4's convolutions and norms")
    XCTAssertEqual(counts, counts.sorted(by: >), "ranked")
    let expected = layers.prefix(2).filter { ($0["conflicts"] as? Int ?? 0) > 0 }.compactMap { $0["layer"] as? String }
    let chosen = try XCTUnwrap(recon["task_specific"] as? [String])
    XCTAssertEqual(chosen, expected)
    XCTAssertFalse(chosen.isEmpty, "at S = 0.5 some layer of left/right conflicts: \(layers)")
    let mtl = try json(dir + "/recon/mtl.json")
    XCTAssertEqual(mtl["task_specific"] as? [String], chosen)
    XCTAssertEqual(mtl["steps"] as? Int, 2)
    let model = try SafeTensors.read(URL(fileURLWithPath: dir + "/recon/latest/model.safetensors")).entries
    for layer in chosen {
      XCTAssertNotNil(model[layer + ".task0.weight"], layer)
      XCTAssertNotNil(model[layer + ".task1.weight"], layer)
      XCTAssertNil(model[layer + ".weight"], layer)
    }
    XCTAssertTrue(r.stdout.contains("recon: conflicts per layer"), r.stdout)

    let single = try Processes.parallax(
      np: 1, ["mtl", "--conflict-scores", "--max-steps", "3", "--run-dir", dir + "/scores"] + common, timeout: 600)
    XCTAssertEqual(single.status, 0, single.stdout + single.stderr)
    let scores = try json(dir + "/scores/conflicts.json")
    XCTAssertEqual((scores["layers"] as? [[String: Any]])?.map { "\($0["layer"]!) \($0["conflicts"]!)" },
      layers.map { "\($0["layer"]!) \($0["conflicts"]!)" }, "1 rank's scores are 2 ranks'")
    XCTAssertNil(scores["task_specific"])
  }

  func testBadReconSettingsNameTheirOption() throws {
    let error = SupervisedMTLTests.settingError
    XCTAssertTrue(error(["--task-specific", "encoder.4,encoder.6"]).contains("'encoder.6' is not a conv4 layer"))
    XCTAssertTrue(error(["--task-specific", "encoder.4", "--model", "resnet18"]).contains("--task-specific"))
    XCTAssertTrue(error(["--task-specific", "encoder.4", "--tasks", "left"]).contains("names one"))
    XCTAssertTrue(
      error(["--task-specific", "encoder.4", "--mtl", "mgda", "--mgda-on", "representation"]).contains("MGDA-UB"))
    XCTAssertTrue(error(["--recon-threshold", "2"]).contains("--recon-threshold"))
    XCTAssertEqual(error(["--task-specific", "encoder.4, encoder.9"]), "")
  }
}
