import Data
import Foundation
import Model
import XCTest

@testable import Train

/// Supervised multi-task learning (issue 17): `--method supervised` (shared conv4, a linear
/// head per task, cross-entropy over the global batch) with the `--mtl` balancers, the
/// labelled data it reads, Δm %, and `parallax mtl` end to end.
final class SupervisedMTLTests: XCTestCase {
  static let multiFashion = ["--method", "supervised", "--data", "multi-fashion", "--model", "conv4", "--seed", "5"]

  // MARK: W ≡ 1

  /// One plain-SGD step of pcgrad on MultiFashion (global batch 12) at 1 and 2 ranks: the
  /// summed gradient (encoder: PCGrad's direction of the global task gradients; heads) and
  /// the parameters after the step agree; and PCGrad did something (its encoder gradient is
  /// not EW's, the heads' are).
  func testPCGradStepOnTwoRanksIsOneRanks() throws {
    let args = Self.multiFashion + ["--global-batch", "12", "--mtl", "pcgrad"]
    let one = try sgdGradientStep(np: 1, name: "sup-pcgrad-1", args)
    let two = try sgdGradientStep(np: 2, name: "sup-pcgrad-2", args)
    XCTAssertEqual(Set(one.grads.keys.filter { $0.hasPrefix("head.") }), ["head.left.weight", "head.left.bias", "head.right.weight", "head.right.bias"])
    assertSameTensors(one.grads, two.grads, rel: 2e-4, "supervised pcgrad gradient, 2 ranks")
    assertSameTensors(one.params, two.params, rel: 1e-4, "supervised pcgrad parameters after SGD, 2 ranks")
    let ew = try sgdGradientStep(np: 1, name: "sup-ew-1", Self.multiFashion + ["--global-batch", "12", "--mtl", "ew"])
    let w = "encoder.8.weight"
    let change = zip(ew.grads[w]!.values, one.grads[w]!.values).map { abs($0 - $1) }.max() ?? 0
    XCTAssertGreaterThan(change, 1e-3 * (ew.grads[w]!.values.map(abs).max() ?? 0), "pcgrad left \(w)'s gradient as EW's")
    for h in ["head.left.weight", "head.right.weight"] {
      XCTAssertEqual(ew.grads[h]!.values, one.grads[h]!.values, "pcgrad changed \(h)'s gradient")
      XCTAssertGreaterThan(one.grads[h]!.values.map(abs).max() ?? 0, 1e-4)
    }
  }

  /// MGDA-UB (`--mgda-on representation`): the Gram matrix of the encoder output's task
  /// gradients is summed over the ranks, so 2 ranks step as 1; the heads are weighted.
  func testRepresentationMGDAStepOnTwoRanksIsOneRanks() throws {
    let args = Self.multiFashion + ["--global-batch", "12", "--mtl", "mgda", "--mgda-on", "representation"]
    let one = try sgdGradientStep(np: 1, name: "sup-mgdaub-1", args)
    let two = try sgdGradientStep(np: 2, name: "sup-mgdaub-2", args)
    assertSameTensors(one.grads, two.grads, rel: 2e-4, "MGDA-UB gradient, 2 ranks")
    assertSameTensors(one.params, two.params, rel: 1e-4, "MGDA-UB parameters after SGD, 2 ranks")
    let ew = try sgdGradientStep(np: 1, name: "sup-ew-1b", Self.multiFashion + ["--global-batch", "12", "--mtl", "ew"])
    // Task weights on the simplex: each head's gradient is αₜ times EW's, Σ αₜ = 1.
    var alphas: [Double] = []
    for t in ["left", "right"] {
      let a = ew.grads["head.\(t).weight"]!.values, b = one.grads["head.\(t).weight"]!.values
      let num = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
      let den = a.reduce(0.0) { $0 + Double($1) * Double($1) }
      let alpha = num / den
      for (x, y) in zip(a, b) { XCTAssertEqual(Double(y), alpha * Double(x), accuracy: 1e-6 + 1e-4 * abs(Double(x))) }
      alphas.append(alpha)
    }
    XCTAssertEqual(alphas.reduce(0, +), 1, accuracy: 1e-4)
    XCTAssertTrue(alphas.allSatisfy { $0 >= -1e-6 }, "weights \(alphas)")
  }

  // MARK: Labelled data

  /// A labelled set whose sample i holds the value i everywhere, with classes i % 3 and i % 5.
  final class Numbered: EvalSource {
    let count = 24
    var inputShape: InputShape { InputShape(channels: 1, height: 2, width: 2) }
    var labelSlots: [LabelSlot] {
      [LabelSlot(name: "a", classNames: ["0", "1", "2"]), LabelSlot(name: "b", classNames: (0..<5).map { "\($0)" })]
    }
    func label(_ i: Int, slot: Int) -> Int { slot == 0 ? i % 3 : i % 5 }
    func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
      for (row, i) in indices.enumerated() { (x + row * 4).update(repeating: Float(i), count: 4) }
    }
  }

  func testLabelledSourceGivesEachRankItsSamplesWithTheirClasses() throws {
    let source = Numbered()
    var rows: [[Float]] = []
    for rank in 0..<2 {
      let s = try LabelledViewSource(source, globalBatch: 8, rank: rank, worldSize: 2, seed: 9)
      XCTAssertEqual(s.transformCount, 2)
      XCTAssertEqual(s.batchShape, Shape(4, 1, 2, 2))
      var x = [Float](repeating: -1, count: 16)
      var y = [Float](repeating: -1, count: 8)
      try x.withUnsafeMutableBufferPointer { xp in
        try y.withUnsafeMutableBufferPointer { yp in try s.load(epoch: 1, batch: 2, into: xp.baseAddress!, transforms: yp.baseAddress!) }
      }
      for r in 0..<4 {
        let i = Int(x[r * 4])
        XCTAssertEqual(y[r * 2], Float(i % 3))
        XCTAssertEqual(y[r * 2 + 1], Float(i % 5))
        rows.append([Float(i)])
      }
    }
    // The two ranks together hold global batch 2 of epoch 1, in order.
    let sampler = try DistributedSampler(count: 24, globalBatch: 8, rank: 0, worldSize: 1, seed: 9)
    XCTAssertEqual(rows.map { Int($0[0]) }, Array(try sampler.globalIndices(epoch: 1, batch: 2)))
  }

  // MARK: Δm and bad input

  func testDeltaMIsLibMTLsMeanRelativeChange() throws {
    let d = try MTLResults.deltaM(tasks: ["a", "b"], accuracy: [0.8, 0.5], single: ["a": 0.9, "b": 0.4], path: "b.json")
    XCTAssertEqual(d, 100 * ((0.8 - 0.9) / 0.9 + (0.5 - 0.4) / 0.4) / 2, accuracy: 1e-12)
    XCTAssertEqual(d, 6.9444, accuracy: 1e-4)
    XCTAssertThrowsError(try MTLResults.deltaM(tasks: ["a", "c"], accuracy: [0.8, 0.5], single: ["a": 0.9], path: "b.json")) {
      XCTAssertTrue("\($0)".contains("b.json") && "\($0)".contains("'c'"), "\($0)")
    }
    let dir = Processes.temporaryDirectory("baselines")
    try MTLResults.writeBaselines(["a": 0.9, "b": 0.4], tasks: ["a", "b"], to: dir + "/ok.json")
    XCTAssertEqual(try MTLResults.readBaselines(dir + "/ok.json"), ["a": 0.9, "b": 0.4])
    try "{\"tasks\": {\"a\": 90}}".write(toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try MTLResults.readBaselines(dir + "/bad.json")) { XCTAssertTrue("\($0)".contains("bad.json"), "\($0)") }
    XCTAssertThrowsError(try MTLResults.readBaselines(dir + "/missing.json")) { XCTAssertTrue("\($0)".contains("missing.json")) }
  }

  /// The error a supervised MultiFashion configuration with `args` gives when validated and
  /// built ("" when none).
  static func settingError(_ args: [String]) -> String {
    var c = PretrainConfig()
    do {
      try OptionArguments.apply(multiFashion + args, to: &c)
      try c.validate()
      _ = try Methods.make(c, collective: LocalCollective())
      return ""
    } catch { return "\(error)" }
  }

  func testBadSettingsNameTheirOption() throws {
    let error = Self.settingError
    XCTAssertTrue(error(["--tasks", "left,top"]).contains("--tasks: 'top' is not a label slot"), error(["--tasks", "left,top"]))
    XCTAssertTrue(error(["--tasks", "left,top"]).contains("left, right"))
    XCTAssertTrue(error(["--tasks", "left", "--mtl", "pcgrad"]).contains("--mtl pcgrad"))
    XCTAssertTrue(error(["--mgda-on", "representation", "--mtl", "pcgrad"]).contains("--mgda-on representation"))
    XCTAssertTrue(error(["--mtl", "mgda", "--mgda-on", "representation", "--accumulate", "2", "--global-batch", "8"]).contains("--accumulate 1"))
    XCTAssertEqual(error(["--tasks", "right"]), "")
    // The head names follow the tasks.
    var c = PretrainConfig()
    try OptionArguments.apply(Self.multiFashion + ["--tasks", "right"], to: &c)
    let m = try XCTUnwrap(try Methods.make(c, collective: LocalCollective()) as? SupervisedMTLMethod)
    XCTAssertEqual(m.taskNames, ["right"])
    XCTAssertEqual(m.slots, [1])
    XCTAssertEqual(m.arena.parameterRanges.filter { $0.name.hasPrefix("head.") }.map(\.name), ["head.right.weight", "head.right.bias"])
    XCTAssertEqual(m.encoder.featureDim, 64 * 2 * 2)  // 36 → 18 → 9 → 4 → 2
  }

  // MARK: parallax mtl end to end

  /// Single-task baselines, then a multi-task run against them: both tasks learn (well above
  /// the 10 % of chance after 40 steps), `mtl.json` holds the accuracies, and its Δm is the
  /// formula applied to the two files' numbers.
  func testMTLCommandTrainsAboveChanceAndReportsDeltaM() throws {
    let dir = Processes.temporaryDirectory("mtl-command")
    let common = [
      "--data", "multi-fashion", "--global-batch", "64", "--max-steps", "40", "--optimizer", "sgd", "--base-lr", "0.05",
      "--lr-scaling", "none", "--momentum", "0.9", "--weight-decay", "0", "--warmup-steps", "0", "--threads", "1",
      "--seed", "1",
    ]
    let single = try Processes.parallax(np: 1, ["mtl", "--single-task", "--run-dir", dir + "/single"] + common, timeout: 600)
    XCTAssertEqual(single.status, 0, single.stdout + single.stderr)
    let baselines = try MTLResults.readBaselines(dir + "/single/baselines.json")
    XCTAssertEqual(Set(baselines.keys), ["left", "right"])
    let multi = try Processes.parallax(
      np: 2, ["mtl", "--mtl", "pcgrad", "--baselines", dir + "/single/baselines.json", "--run-dir", dir + "/pcgrad"] + common,
      timeout: 600)
    XCTAssertEqual(multi.status, 0, multi.stdout + multi.stderr)
    let data = try XCTUnwrap(FileManager.default.contents(atPath: dir + "/pcgrad/mtl.json"))
    let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let acc = try XCTUnwrap(o["accuracy"] as? [String: Double])
    print("mtl command: single \(baselines), pcgrad \(acc), Δm \(o["delta_m_percent"] ?? "-")")
    for t in ["left", "right"] {
      XCTAssertGreaterThan(try XCTUnwrap(acc[t]), 0.3, "pcgrad \(t)")
      XCTAssertGreaterThan(try XCTUnwrap(baselines[t]), 0.3, "single-task \(t)")
    }
    let expected = 100 * ((acc["left"]! - baselines["left"]!) / baselines["left"]! + (acc["right"]! - baselines["right"]!) / baselines["right"]!) / 2
    XCTAssertEqual(try XCTUnwrap(o["delta_m_percent"] as? Double), expected, accuracy: 1e-9)
    XCTAssertEqual(o["mtl"] as? String, "pcgrad")
    XCTAssertTrue(multi.stdout.contains("Δm"), multi.stdout)
  }
}
