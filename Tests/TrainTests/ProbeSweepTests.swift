import Foundation
import Train
import XCTest

/// `eval linear --holdout`: the probe's settings are chosen on a held-out tail of the training
/// features, never on the rows they are fit on, and never on the test split.
final class ProbeSweepTests: XCTestCase {
  /// 100 rows labelled `x₀ > 0`, then 400 held-out rows labelled the other way. Fit on the first
  /// 100 only, every setting scores ≈ 0 on the tail; a sweep that also fit on the tail (400 of
  /// 500 rows) would learn its rule and score ≈ 1.
  func testValidationIsFitWithoutTheHeldOutRows() throws {
    var rng = SystemRandomNumberGenerator()
    var values = [Float]()
    var labels = [Int]()
    for i in 0..<500 {
      var x0 = Float.random(in: 0.2...1, using: &rng)
      if Bool.random(using: &rng) { x0 = -x0 }
      values += [x0, Float.random(in: -1...1, using: &rng)]
      labels.append((x0 > 0) == (i < 100) ? 1 : 0)
    }
    let set = FeatureSet(dim: 2, values: values, labels: labels)
    let (fit, validation) = ProbeSweep.split(set, holdout: 400)
    XCTAssertEqual(fit.count, 100)
    XCTAssertEqual(validation.count, 400)
    XCTAssertEqual(Array(validation.values.prefix(2)), Array(values[200..<202]))
    XCTAssertEqual(validation.labels.first, labels[100])
    let settings = ProbeSweep.grid(epochs: [100], lr: [0.3, 1], weightDecay: [0])
    XCTAssertEqual(settings.count, 2)
    let (accs, _) = try ProbeSweep.validate(train: set, holdout: 400, classes: 2, settings: settings)
    for a in accs { XCTAssertLessThan(a, 0.1, "validation accuracies \(accs): the held-out rows were fit on") }
  }

  /// The best validation accuracy is chosen, the first on ties; the grid runs epochs outermost.
  func testTheBestSettingIsChosen() throws {
    let grid = ProbeSweep.grid(epochs: [1, 2], lr: [0.1], weightDecay: [0, 1])
    XCTAssertEqual(grid.map(\.epochs), [1, 1, 2, 2])
    XCTAssertEqual(grid.map(\.weightDecay), [0, 1, 0, 1])
    // Two overlapping classes (deterministic rows): a probe that barely moves from its
    // initialisation and one trained properly score differently on the tail.
    var values = [Float]()
    var labels = [Int]()
    for i in 0..<400 {
      let c = i % 3 == 0 ? 1 : 0
      values += [Float(c) - 0.5 + Float((i * 37) % 11) / 11 - 0.5, Float((i * 13) % 7) / 7]
      labels.append(c)
    }
    let set = FeatureSet(dim: 2, values: values, labels: labels)
    let settings = ProbeSweep.grid(epochs: [1, 3], lr: [1e-5, 0.5], weightDecay: [0])
    let (accs, best) = try ProbeSweep.validate(train: set, holdout: 200, classes: 2, settings: settings)
    XCTAssertEqual(accs.count, 4)
    XCTAssertGreaterThan(Set(accs).count, 1, "the settings should score differently: \(accs)")
    XCTAssertEqual(best, accs.firstIndex(of: accs.max()!)!, "\(accs)")
  }

  /// The command: several values without --holdout are refused before any work; with it, one
  /// validation line per setting and the chosen setting is the best validation line's.
  func testEvalLinearHoldoutSweepsAndChoosesOnValidation() throws {
    let dir = Processes.temporaryDirectory("eval-holdout")
    let pre = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "32", "--max-steps", "1", "--threads", "1", "--run-dir", dir])
    XCTAssertEqual(pre.status, 0, pre.stderr)
    let base = ["eval", "linear", "--checkpoint", dir + "/latest", "--limit", "600", "--threads", "1", "--layer", "pooled"]
    let refused = try Processes.parallax(np: 1, base + ["--lr", "0.1", "0.3"])
    XCTAssertNotEqual(refused.status, 0)
    XCTAssertTrue(refused.stderr.contains("--holdout"), refused.stderr)
    let tooLarge = try Processes.parallax(np: 1, base + ["--holdout", "600"])
    XCTAssertNotEqual(tooLarge.status, 0)
    XCTAssertTrue((tooLarge.stderr + tooLarge.stdout).contains("--holdout 600"), tooLarge.stderr)

    let swept = try Processes.parallax(
      np: 2, base + ["--holdout", "200", "--epochs", "2", "--lr", "0.001", "0.1", "--weight-decay", "0", "1e-4"])
    XCTAssertEqual(swept.status, 0, swept.stderr)
    let lines = swept.stdout.split(separator: "\n").map(String.init)
    let validation = lines.filter { $0.hasPrefix("validation ") }
    XCTAssertEqual(validation.count, 4, swept.stdout)
    func setting(_ line: String) -> String { String(line[line.range(of: "[")!.lowerBound...line.range(of: "]")!.lowerBound]) }
    func percent(_ line: String, after marker: String) -> Double {
      let tail = line[line.range(of: marker)!.upperBound...]
      return Double(tail.prefix { $0 != "%" })!
    }
    let scores = validation.map { (setting($0), percent($0, after: "]: ")) }
    XCTAssertTrue(validation.allSatisfy { $0.contains("(fit 400, validate 200)") }, swept.stdout)
    let best = scores.reduce(scores[0]) { $1.1 > $0.1 ? $1 : $0 }
    let chosen = lines.filter { $0.hasPrefix("linear ") }
    XCTAssertEqual(chosen.count, 1, swept.stdout)
    XCTAssertTrue(chosen[0].contains("with \(best.0)"), "chose \(chosen[0]), best validation \(best)")
    XCTAssertEqual(percent(chosen[0], after: "(validation "), best.1, accuracy: 1e-9)
    XCTAssertTrue(chosen[0].contains("600 train / 600 test samples"), chosen[0])
  }
}
