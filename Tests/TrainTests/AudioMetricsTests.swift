import Data
import XCTest

@testable import Train

final class AudioMetricsTests: XCTestCase {
  /// scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75,
  /// average_precision_score(…) = 0.8333.
  func testROCAndPRAUCByHand() {
    let s: [Float] = [0.1, 0.4, 0.35, 0.8]
    let l = [false, false, true, true]
    XCTAssertEqual(MultiLabelMetrics.rocAUC(scores: s, labels: l)!, 0.75, accuracy: 1e-12)
    // Thresholds 0.8 (P 1, R ½), 0.4 (P ½, R ½), 0.35 (P ⅔, R 1), 0.1: AP = ½·1 + ½·⅔.
    XCTAssertEqual(MultiLabelMetrics.averagePrecision(scores: s, labels: l)!, 5.0 / 6.0, accuracy: 1e-12)
    // Ties count one half; a perfect ranking gives 1; a reversed one 0.
    XCTAssertEqual(MultiLabelMetrics.rocAUC(scores: [0.5, 0.5], labels: [true, false])!, 0.5)
    XCTAssertEqual(MultiLabelMetrics.rocAUC(scores: [1, 2, 3], labels: [false, true, true])!, 1)
    XCTAssertEqual(MultiLabelMetrics.rocAUC(scores: [3, 2, 1], labels: [false, true, true])!, 0)
    // Tied block: both at 0.5 enter together, P = ½ at R = 1.
    XCTAssertEqual(MultiLabelMetrics.averagePrecision(scores: [0.5, 0.5], labels: [true, false])!, 0.5)
    XCTAssertNil(MultiLabelMetrics.rocAUC(scores: [1, 2], labels: [true, true]))
  }

  /// Macro averages skip classes without both positives and negatives.
  func testMacroAverage() {
    // 4 examples × 3 classes; class 2 is all positive and is skipped.
    let scores: [Float] = [0.1, 0.9, 0.3, 0.4, 0.8, 0.2, 0.35, 0.1, 0.5, 0.8, 0.3, 0.9]
    let labels = [false, true, true, false, false, true, true, false, true, true, true, true]
    let m = MultiLabelMetrics.macro(scores: scores, labels: labels, classes: 3)
    XCTAssertEqual(m.classesUsed, 2)
    // Class 0 is the 0.75 / 0.8333 case above; class 1 ranks [0.9 +, 0.8 −, 0.3 +, 0.1 −]:
    // AUC = 3/4, AP = ½·1 + ½·⅔.
    XCTAssertEqual(m.rocAUC, 0.75, accuracy: 1e-12)
    XCTAssertEqual(m.prAUC, 5.0 / 6.0, accuracy: 1e-12)
  }

  /// The 95 % interval by hand: accuracies 1, ½, ¾, ¾ → mean ¾, σ = √(1/32), CI = 1.96·σ/2.
  func testConfidenceIntervalByHand() {
    let r = FewShotEvaluator.summarize([1, 0.5, 0.75, 0.75])
    XCTAssertEqual(r.mean, 0.75, accuracy: 1e-12)
    XCTAssertEqual(r.ci95, 1.96 * (1.0 / 32).squareRoot() / 2, accuracy: 1e-12)
    XCTAssertEqual(r.ci95, 0.173241, accuracy: 1e-6)
  }

  /// Episodes: distinct classes, disjoint support and query, keyed by task; separable
  /// clusters give 100 %, features that carry no class information give about 1/ways.
  func testEpisodesAndNearestCentroid() throws {
    let classes = 8, perClass = 20, d = 4
    var labels: [Int] = [], clustered: [Float] = [], noise: [Float] = []
    var rng = KeyedRandom(seed: 1, epoch: 0, sample: 0, purpose: .noise)
    for c in 0..<classes {
      for _ in 0..<perClass {
        labels.append(c)
        for j in 0..<d { clustered.append((j == c % d ? 10 * Float(1 + c / d) : 0) + 0.1 * rng.nextGaussian()) }
        for _ in 0..<d { noise.append(rng.nextGaussian()) }
      }
    }
    let fs = FewShotEvaluator(ways: 5, shots: 1, queries: 5, tasks: 200, seed: 3)
    let e = try fs.episode(7, labels: labels)
    XCTAssertEqual(Set(e.classes).count, 5)
    for w in 0..<5 {
      XCTAssertTrue(Set(e.support[w]).isDisjoint(with: e.query[w]))
      XCTAssertTrue((e.support[w] + e.query[w]).allSatisfy { labels[$0] == e.classes[w] })
    }
    XCTAssertEqual(e, try fs.episode(7, labels: labels))
    XCTAssertNotEqual(e, try fs.episode(8, labels: labels))
    let good = try fs.evaluate(FeatureSet(dim: d, values: clustered, labels: labels))
    XCTAssertEqual(good.mean, 1)
    XCTAssertEqual(good.ci95, 0)
    let chance = try fs.evaluate(FeatureSet(dim: d, values: noise, labels: labels))
    XCTAssertEqual(chance.mean, 0.2, accuracy: 0.05)
    XCTAssertGreaterThan(chance.ci95, 0)
    XCTAssertThrowsError(try FewShotEvaluator(ways: 9).evaluate(FeatureSet(dim: d, values: noise, labels: labels)))
  }
}

final class MultiLabelProbeTests: XCTestCase {
  /// Tags that are linear functions of the features are learnt (AUC near 1); a tag that is
  /// independent noise scores about 0.5.
  func testProbeLearnsLinearTags() {
    var rng = KeyedRandom(seed: 4, epoch: 0, sample: 0, purpose: .noise)
    let d = 6, n = 400
    func make(_ n: Int) -> ([Float], [Float]) {
      var x: [Float] = [], y: [Float] = []
      for _ in 0..<n {
        let f = (0..<d).map { _ in rng.nextGaussian() }
        x += f
        y += [f[0] + f[1] > 0 ? 1 : 0, f[2] - 0.5 * f[3] > 0.3 ? 1 : 0, rng.nextFloat() < 0.5 ? 1 : 0]
      }
      return (x, y)
    }
    let (xTrain, yTrain) = make(n), (xTest, yTest) = make(n)
    let probe = MultiLabelProbe(epochs: 200)
    let model = probe.fit(xTrain, targets: yTrain, dim: d, classes: 3)
    let z = model.logits(xTest)
    let labels = yTest.map { $0 > 0.5 }
    func auc(_ k: Int) -> Double {
      MultiLabelMetrics.rocAUC(scores: (0..<n).map { z[$0 * 3 + k] }, labels: (0..<n).map { labels[$0 * 3 + k] })!
    }
    XCTAssertGreaterThan(auc(0), 0.97)
    XCTAssertGreaterThan(auc(1), 0.95)
    XCTAssertEqual(auc(2), 0.5, accuracy: 0.1)
    let m = probe.evaluate(train: xTrain, trainTargets: yTrain, test: xTest, testTargets: yTest, dim: d, classes: 3)
    XCTAssertEqual(m.classesUsed, 3)
    XCTAssertEqual(m.rocAUC, (auc(0) + auc(1) + auc(2)) / 3, accuracy: 1e-9)
  }
}
