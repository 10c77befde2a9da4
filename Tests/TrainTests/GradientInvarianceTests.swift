import Foundation
import Model
import XCTest

/// W ranks ≡ 1 rank on the **gradient** (issue 13 §1): under LARS every weight update has
/// norm lr·η·‖w‖ whatever the gradient, so comparing parameters after a LARS step cannot see
/// a wrong weight gradient. These runs use plain SGD and compare the summed gradient of step 1
/// (before the optimizer), tensor by tensor, and the parameters after an SGD step that moves
/// every weight measurably.
final class GradientInvarianceTests: XCTestCase {
  /// One SGD step; returns (summed gradient of step 1, parameters after it).
  func step(np: Int, name: String, _ args: [String]) throws -> ([String: SafeTensors.Entry], [String: SafeTensors.Entry]) {
    let dir = Processes.temporaryDirectory(name)
    let dump = dir + "/grads.safetensors"
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--model", "conv4", "--global-batch", "12", "--max-steps", "1", "--warmup-steps", "0",
        "--seed", "11", "--threads", "1", "--run-dir", dir, "--optimizer", "sgd", "--base-lr", "2",
        "--lr-scaling", "none", "--momentum", "0", "--weight-decay", "0", "--debug-dump-gradients", dump,
      ] + args)
    XCTAssertEqual(r.status, 0, "np \(np) failed:\n\(r.stdout)\n\(r.stderr)")
    let g = try SafeTensors.read(URL(fileURLWithPath: dump)).entries
    let p = try SafeTensors.read(URL(fileURLWithPath: dir + "/latest/model.safetensors")).entries
    return (g, p)
  }

  /// Every tensor within `rel` of its own largest value — or, for a tensor whose true
  /// gradient is zero (a conv or linear bias that feeds a BatchNorm), within 1e-5 of the
  /// largest gradient of the whole model in absolute terms: rounding noise (measured ≈ 1e-6),
  /// not a loose relative bound.
  func assertSame(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], rel: Float, _ what: String,
    line: UInt = #line
  ) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), line: line)
    let global = a.values.flatMap(\.values).map(abs).max() ?? 0
    XCTAssertGreaterThan(global, 0, line: line)
    for (name, x) in a {
      guard let y = b[name] else { continue }
      let own = x.values.map(abs).max() ?? 0
      let diff = zip(x.values, y.values).map { abs($0 - $1) }.max() ?? 0
      // Measured: BN-fed biases differ by ≈ 1e-6 of the model's largest gradient.
      let allowed = max(rel * own, 1e-5 * global)
      XCTAssertLessThanOrEqual(diff, allowed, "\(what) \(name): max difference \(diff), own max \(own)", line: line)
    }
  }

  func testSGDGradientOfTwoAndThreeRanksIsOneRanks() throws {
    for method in [["--method", "simclr"], ["--method", "mtslvr", "--adapter", "parallel"]] {
      let (g1, p1) = try step(np: 1, name: "g1", method)
      for np in [2, 3] {
        let (g, p) = try step(np: np, name: "g\(np)", method)
        assertSame(g1, g, rel: 2e-4, "\(method[1]) gradient, \(np) ranks")
        assertSame(p1, p, rel: 1e-4, "\(method[1]) parameters after SGD, \(np) ranks")
      }
      // The SGD step moved every weight (lr 2 on the raw gradient), so the parameter
      // comparison sees the gradient too.
      let (_, before) = try step(np: 1, name: "g0", method + ["--base-lr", "1e-30"])
      for (name, e) in p1 where name.hasSuffix(".weight") && e.shape.count > 1 {
        let moved = zip(e.values, before[name]!.values).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(moved, 1e-5, "\(method[1]) \(name) did not move")
      }
    }
  }

  /// The comparison can fail: per-rank BatchNorm statistics (`--sync-bn false`) give another
  /// gradient on 2 ranks than on 1.
  func testComparisonSeesPerRankBatchNorm() throws {
    let (g1, _) = try step(np: 1, name: "b1", ["--sync-bn", "false"])
    let (g2, _) = try step(np: 2, name: "b2", ["--sync-bn", "false"])
    let worst = g1.keys.map { n in
      zip(g1[n]!.values, g2[n]!.values).map { abs($0 - $1) }.max() ?? 0
    }.max() ?? 0
    let global = g1.values.flatMap(\.values).map(abs).max() ?? 1
    XCTAssertGreaterThan(worst, 1e-2 * global)
  }
}
