import Foundation
import XCTest

@testable import Model

final class LossTests: XCTestCase {
  func testCrossEntropyMatchesPyTorch() throws {
    let f = try Fixtures.load("cross_entropy")
    let N = f["logits"]!.shape[0]
    let K = f["logits"]!.shape[1]
    let logits = f["logits"]!.values
    let labels = f["labels"]!.values.map { Int($0) }
    var d = [Float](repeating: .nan, count: N * K)
    let loss = try softmaxCrossEntropy(&d, logits, labels, N, K)
    XCTAssertEqual(loss, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]))
    NumCheck.assertClose(d, f["dlogits"]!.values, rtol: 1e-4, atol: 1e-6, "dlogits")

    // Soft targets that are one-hot give the same loss and gradient.
    var onehot = [Float](repeating: 0, count: N * K)
    for i in 0..<N { onehot[i * K + labels[i]] = 1 }
    var ds = [Float](repeating: .nan, count: N * K)
    let soft = try softmaxCrossEntropy(&ds, logits, targets: onehot, N, K)
    XCTAssertEqual(soft, loss, accuracy: 1e-6 * abs(loss))
    NumCheck.assertClose(ds, d, rtol: 1e-5, atol: 1e-7, "one-hot soft dlogits")
  }

  func testCrossEntropyHandComputed() throws {
    // Two classes, logits (0, ln 3): softmax (1/4, 3/4); label 1 → −ln(3/4).
    let logits: [Float] = [0, log(3)]
    var d: [Float] = [0, 0]
    let loss = try softmaxCrossEntropy(&d, logits, [1], 1, 2)
    XCTAssertEqual(loss, -log(0.75), accuracy: 1e-6)
    XCTAssertEqual(d[0], 0.25, accuracy: 1e-6)
    XCTAssertEqual(d[1], -0.25, accuracy: 1e-6)
    // Large logits stay finite (stable log-sum-exp).
    let big = try softmaxCrossEntropy(nil, [1000, -1000], [1], 1, 2)
    XCTAssertEqual(big, 2000, accuracy: 1e-2)
    XCTAssertThrowsError(try softmaxCrossEntropy(nil, logits, [2], 1, 2))
  }

  /// Central differences in Double-accumulated losses, h = 1e-3; tolerance 1e-3 of the
  /// largest gradient plus 1e-2 relative.
  func testCrossEntropyGradientCheck() throws {
    let N = 4
    let K = 5
    var logits = NumCheck.random(N * K, seed: 1, scale: 3)
    let labels = [0, 4, 2, 2]
    var targets = NumCheck.random(N * K, seed: 2, scale: 0.5, offset: 0.5)
    for i in 0..<N {  // rows of probabilities
      let s = targets[i * K..<(i + 1) * K].reduce(0, +)
      for j in 0..<K { targets[i * K + j] /= s }
    }
    var d = [Float](repeating: 0, count: N * K)
    var ds = [Float](repeating: 0, count: N * K)
    _ = try softmaxCrossEntropy(&d, logits, labels, N, K)
    _ = try softmaxCrossEntropy(&ds, logits, targets: targets, N, K)
    try logits.withUnsafeMutableBufferPointer { p in
      let x = p.baseAddress!
      let fd = try NumCheck.centralDifferences(x, count: N * K, h: 1e-3) {
        Double(try softmaxCrossEntropy(nil, x, labels, N, K))
      }
      let fds = try NumCheck.centralDifferences(x, count: N * K, h: 1e-3) {
        Double(try softmaxCrossEntropy(nil, x, targets: targets, N, K))
      }
      NumCheck.assertClose(
        d, fd, rtol: 1e-2, atol: 1e-3, "hard-label dlogits vs finite differences")
      NumCheck.assertClose(
        ds, fds, rtol: 1e-2, atol: 1e-3, "soft-label dlogits vs finite differences")
    }
  }

  func testBCEWithLogitsMatchesPyTorch() throws {
    let f = try Fixtures.load("bce_with_logits")
    let N = f["logits"]!.shape[0]
    let K = f["logits"]!.shape[1]
    var d = [Float](repeating: .nan, count: N * K)
    let loss = try bceWithLogits(&d, f["logits"]!.values, f["target"]!.values, N, K)
    XCTAssertEqual(loss, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]))
    NumCheck.assertClose(d, f["dlogits"]!.values, rtol: 1e-4, atol: 1e-6, "bce dlogits")
  }

  func testBCEWithLogitsGradientCheckAndStability() throws {
    let N = 3
    let K = 4
    var logits = NumCheck.random(N * K, seed: 3, scale: 4)
    let targets = NumCheck.random(N * K, seed: 4, scale: 0.5, offset: 0.5)
    var d = [Float](repeating: 0, count: N * K)
    _ = try bceWithLogits(&d, logits, targets, N, K)
    try logits.withUnsafeMutableBufferPointer { p in
      let x = p.baseAddress!
      let fd = try NumCheck.centralDifferences(x, count: N * K, h: 1e-3) {
        Double(try bceWithLogits(nil, x, targets, N, K))
      }
      NumCheck.assertClose(d, fd, rtol: 1e-2, atol: 1e-3, "bce dlogits vs finite differences")
    }
    // x = ±100 with the matching target costs ~0, with the wrong one ~100; both finite.
    XCTAssertEqual(try bceWithLogits(nil, [100, -100], [1, 0], 1, 2), 0, accuracy: 1e-6)
    XCTAssertEqual(try bceWithLogits(nil, [100, -100], [0, 1], 1, 2), 100, accuracy: 1e-3)
  }
}
