import Foundation
import Model
import XCTest

@testable import Train

/// Multi-task balancing under `mpirun` (issue 17): each method's update is the single-process
/// update on the global batch. Plain SGD, one step of `mtslvr --adapter parallel`, conv4,
/// global batch 12.
///
/// Every method at once: a run with `--mtl M` dumps (hidden `--debug-dump-balancers`) the
/// balancer input of step 1 — the task gradients after the cross-rank sum — and what *every*
/// method makes of it, so 1, 2 and 3 ranks compare all fifteen methods in three runs. The
/// run's own method goes through the whole step (its gradient dumped before the optimizer,
/// its parameters after SGD), for a loss weighting with random weights (`rlw`: weights keyed
/// by step, task-specific parameters scaled) and a combination with random masks
/// (`graddrop`).
final class BalancingDistributedTests: XCTestCase {
  struct Step {
    var balancers: [String: SafeTensors.Entry]
    var gradients: [String: SafeTensors.Entry]
    var parameters: [String: SafeTensors.Entry]
  }

  let common = ["--method", "mtslvr", "--adapter", "parallel", "--pred-weight", "0.7"]

  func step(np: Int, _ mtl: String, _ extra: [String] = []) throws -> Step {
    let dir = Processes.temporaryDirectory("mtl-\(mtl)-\(np)\(extra.joined())")
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--model", "conv4", "--global-batch", "12", "--max-steps", "1", "--warmup-steps", "0",
        "--seed", "11", "--threads", "1", "--run-dir", dir, "--optimizer", "sgd", "--base-lr", "2",
        "--lr-scaling", "none", "--momentum", "0", "--weight-decay", "0", "--mtl", mtl,
        "--debug-dump-gradients", dir + "/grads.safetensors", "--debug-dump-balancers", dir + "/balancers.safetensors",
      ] + common + extra, timeout: 120)
    XCTAssertEqual(r.status, 0, "np \(np) --mtl \(mtl) failed:\n\(r.stdout)\n\(r.stderr)")
    func read(_ f: String) throws -> [String: SafeTensors.Entry] {
      try SafeTensors.read(URL(fileURLWithPath: dir + "/" + f)).entries
    }
    return Step(
      balancers: try read("balancers.safetensors"), gradients: try read("grads.safetensors"),
      parameters: try read("latest/model.safetensors"))
  }

  /// Every tensor within `rel` of its own largest value, or of 1e-5 of the largest of all
  /// (a BN-fed bias's true gradient is zero; see `GradientInvarianceTests`).
  /// `flips`: how many elements may differ by more (GradDrop's mask is a step function of the
  /// gradients: an element whose purity lies within rounding of its uniform can flip).
  func assertSame(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], rel: Float, _ what: String, flips: Int = 0,
    line: UInt = #line
  ) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), what, line: line)
    let global = a.values.flatMap(\.values).map(abs).max() ?? 0
    XCTAssertGreaterThan(global, 0, line: line)
    for (name, x) in a {
      guard let y = b[name] else { continue }
      let own = x.values.map(abs).max() ?? 0
      let allowed = max(rel * own, 1e-5 * global)
      let diffs = zip(x.values, y.values).map { abs($0 - $1) }
      let beyond = diffs.filter { $0 > allowed }.count
      XCTAssertLessThanOrEqual(
        beyond, flips, "\(what) \(name): \(beyond) elements beyond \(allowed), max difference \(diffs.max() ?? 0)", line: line)
    }
  }

  /// The shared ranges of this configuration, in the balancer's packing order.
  func sharedRanges() throws -> [NamedRange] {
    var c = PretrainConfig()
    try OptionArguments.apply(common + ["--model", "conv4", "--seed", "11"], to: &c)
    return try XCTUnwrap(try Methods.make(c, collective: LocalCollective()) as? MTSLVRMethod).sharedRanges
  }

  /// The gradient the optimizer used over the shared ranges is exactly the balancer's
  /// direction (not summed again by the bucketed sync), and its methods' outputs are finite.
  func assertSharedGradientIsTheDirection(_ s: Step, _ mtl: String, line: UInt = #line) throws {
    let direction = try XCTUnwrap(s.balancers["\(mtl).direction"]).values
    var offset = 0
    for r in try sharedRanges() {
      let g = try XCTUnwrap(s.gradients[r.name]).values
      let differ = zip(g, direction[offset..<offset + r.count]).filter { $0 != $1 }.count
      XCTAssertEqual(differ, 0, "\(mtl): \(r.name): \(differ) of \(r.count) values are not the balancer's", line: line)
      offset += r.count
    }
    XCTAssertEqual(offset, direction.count, line: line)
  }

  func testEveryMethodOnTwoAndThreeRanksIsOneRanks() throws {
    let one = try step(np: 1, "rlw")
    XCTAssertEqual(Set(one.balancers.keys.filter { $0.hasSuffix(".direction") }).count, BalancerName.allCases.count)
    try assertSharedGradientIsTheDirection(one, "rlw")
    // The methods disagree with each other (so comparing them can fail): MGDA is not EW.
    XCTAssertTrue(one.balancers["mgda.direction"]?.values != one.balancers["ew.direction"]?.values)
    for np in [2, 3] {
      let s = try step(np: np, "rlw")
      // The input: each task's gradient summed over the ranks, the same as one rank's.
      assertSame(
        ["g": one.balancers["input.gradients"]!], ["g": s.balancers["input.gradients"]!], rel: 2e-4, "task gradients, \(np) ranks")
      for name in BalancerName.allCases {
        let keys = ["\(name).direction", "\(name).weights"]
        let a = one.balancers.filter { keys.contains($0.key) }
        let b = s.balancers.filter { keys.contains($0.key) }
        assertSame(a, b, rel: 2e-4, "--mtl \(name), \(np) ranks", flips: name == .graddrop ? 3 : 0)
      }
      try assertSharedGradientIsTheDirection(s, "rlw")
      assertSame(one.gradients, s.gradients, rel: 2e-4, "rlw step gradient, \(np) ranks")
      assertSame(one.parameters, s.parameters, rel: 1e-4, "rlw parameters after SGD, \(np) ranks")
    }
  }

  func testGradDropStepOnTwoRanksIsOneRanks() throws {
    let one = try step(np: 1, "graddrop")
    let two = try step(np: 2, "graddrop")
    try assertSharedGradientIsTheDirection(two, "graddrop")
    assertSame(one.gradients, two.gradients, rel: 2e-4, "graddrop step gradient, 2 ranks", flips: 3)
    assertSame(one.parameters, two.parameters, rel: 1e-4, "graddrop parameters after SGD, 2 ranks", flips: 3)
  }
}
