import Foundation
import Model
import XCTest

/// Learned balancing state (issue 17) goes into `method.safetensors` and a resumed run is
/// bit-identical to the uninterrupted one: UW's log-variances, GradNorm's weights and initial
/// losses, MoCo's tracked gradients and λ.
final class BalancingResumeTests: XCTestCase {
  func pretrain(dir: String, mtl: String, _ extra: [String]) throws {
    let r = try Processes.parallax(
      np: 1,
      [
        "pretrain", "--method", "mtslvr", "--adapter", "parallel", "--mtl", mtl, "--model", "conv4",
        "--global-batch", "12", "--max-steps", "4", "--checkpoint-every", "2", "--warmup-steps", "1", "--seed", "5",
        "--threads", "1", "--run-dir", dir,
      ] + extra, timeout: 120)
    XCTAssertEqual(r.status, 0, "--mtl \(mtl) \(extra) failed:\n\(r.stdout)\n\(r.stderr)")
  }

  func bytes(_ path: String) throws -> Foundation.Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  func testResumeIsBitIdenticalWithLearnedBalancingState() throws {
    for mtl in ["uw", "gradnorm", "moco"] {
      let whole = Processes.temporaryDirectory("mtl-resume-whole-\(mtl)")
      let parts = Processes.temporaryDirectory("mtl-resume-parts-\(mtl)")
      try pretrain(dir: whole, mtl: mtl, [])
      try pretrain(dir: parts, mtl: mtl, ["--stop-after", "2"])
      try pretrain(dir: parts, mtl: mtl, ["--resume", "latest"])
      for file in ["model.safetensors", "optimizer.safetensors", "method.safetensors"] {
        XCTAssertEqual(
          try bytes(whole + "/step-00000004/" + file), try bytes(parts + "/step-00000004/" + file),
          "--mtl \(mtl): \(file) differs after resume")
      }
      // The state is learned: steps 3–4 changed it, so the comparison can fail.
      let mid = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000002/method.safetensors")).entries
      let end = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000004/method.safetensors")).entries
      XCTAssertFalse(mid.isEmpty, mtl)
      XCTAssertTrue(mid.keys.allSatisfy { $0.hasPrefix("mtl.") }, "\(mtl): \(mid.keys)")
      XCTAssertNotEqual(mid, end, "--mtl \(mtl): state did not change")
    }
  }
}
