import Foundation
import Model
import XCTest

extension XCTestCase {
  /// The largest per-tensor relative difference ‖a − b‖ / max(‖a‖, floor) between two
  /// state dicts, and the tensor it occurs in; asserts that both hold the same names.
  ///
  /// `floor` matters for tensors whose true value is (nearly) zero, such as a BatchNorm shift
  /// followed by another BatchNorm: there both runs hold only rounding noise.
  func relativeDifference(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], floor: Double = 1e-12,
    including include: (String) -> Bool = { _ in true }
  ) -> (Double, String) {
    var worst = (0.0, "")
    XCTAssertEqual(Set(a.keys), Set(b.keys))
    for (k, ea) in a where include(k) {
      guard let eb = b[k] else { continue }
      var num = 0.0
      var den = 0.0
      for i in 0..<ea.values.count {
        let d = Double(ea.values[i]) - Double(eb.values[i])
        num += d * d
        den += Double(ea.values[i]) * Double(ea.values[i])
      }
      let rel = num.squareRoot() / max(den.squareRoot(), floor)
      if rel > worst.0 { worst = (rel, k) }
    }
    return worst
  }

  /// The tensors of a run directory's latest checkpoint.
  func latestModel(_ runDir: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: runDir + "/latest/model.safetensors")).entries
  }

  /// Per tensor: within `rel` of its own largest value, or — a tensor whose true value is zero
  /// (the gradient of a bias feeding a BatchNorm) — within 1e-5 of the largest value of all,
  /// rounding noise in absolute terms (measured ≈ 1e-6), not a loose relative bound.
  func assertSameTensors(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], rel: Float, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
  ) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), file: file, line: line)
    let global = a.values.flatMap(\.values).map(abs).max() ?? 0
    XCTAssertGreaterThan(global, 0, file: file, line: line)
    for (name, x) in a {
      guard let y = b[name] else { continue }
      let own = x.values.map(abs).max() ?? 0
      let diff = zip(x.values, y.values).map { abs($0 - $1) }.max() ?? 0
      XCTAssertLessThanOrEqual(
        diff, max(rel * own, 1e-5 * global), "\(what) \(name): difference \(diff), own max \(own)", file: file, line: line)
    }
  }

  /// One plain-SGD step (lr 2, no momentum, decay or warm-up) of `pretrain` with `args` on
  /// `np` ranks: the summed step-1 gradient and the parameters after the step.
  func sgdGradientStep(np: Int, name: String, _ args: [String]) throws -> (
    grads: [String: SafeTensors.Entry], params: [String: SafeTensors.Entry], dir: String
  ) {
    let dir = Processes.temporaryDirectory(name)
    let dump = dir + "/grads.safetensors"
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--max-steps", "1", "--warmup-steps", "0", "--threads", "1", "--run-dir", dir,
        "--optimizer", "sgd", "--base-lr", "2", "--lr-scaling", "none", "--momentum", "0", "--weight-decay", "0",
        "--debug-dump-gradients", dump,
      ] + args)
    XCTAssertEqual(r.status, 0, "np \(np) \(args):\n\(r.stdout)\n\(r.stderr)")
    return (
      try SafeTensors.read(URL(fileURLWithPath: dump)).entries,
      try SafeTensors.read(URL(fileURLWithPath: dir + "/latest/model.safetensors")).entries, dir
    )
  }
}
