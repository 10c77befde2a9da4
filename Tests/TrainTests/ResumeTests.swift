import Foundation
import Model
import XCTest

/// `--resume`: same rank count → bit-identical to the uninterrupted run; another rank count
/// (same global batch) → within the rank-invariance tolerance.
final class ResumeTests: XCTestCase {
  func pretrain(np: Int, dir: String, _ extra: [String]) throws {
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--global-batch", "16", "--max-steps", "6", "--checkpoint-every", "3", "--warmup-steps", "2",
        "--seed", "5", "--threads", "1", "--run-dir", dir,
      ] + extra, timeout: 120)
    XCTAssertEqual(r.status, 0, "np \(np) \(extra) failed:\n\(r.stdout)\n\(r.stderr)")
  }

  func bytes(_ path: String) throws -> Foundation.Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  func testResumeIsBitIdenticalAndContinuesOnAnotherRankCount() throws {
    let whole = Processes.temporaryDirectory("resume-whole")
    let parts = Processes.temporaryDirectory("resume-parts")
    let other = Processes.temporaryDirectory("resume-other")
    try pretrain(np: 2, dir: whole, [])
    try pretrain(np: 2, dir: parts, ["--stop-after", "3"])
    XCTAssertEqual(Jobs.checkpointStep(parts + "/latest"), 3)
    XCTAssertFalse(FileManager.default.fileExists(atPath: parts + "/step-00000006"))
    // The same checkpoint continued on one rank.
    try FileManager.default.copyItem(atPath: parts + "/step-00000003", toPath: other + "/step-00000003")
    try pretrain(np: 2, dir: parts, ["--resume", "latest"])
    try pretrain(np: 1, dir: other, ["--resume", other + "/step-00000003"])

    for file in ["model.safetensors", "optimizer.safetensors"] {
      XCTAssertEqual(try bytes(whole + "/step-00000006/" + file), try bytes(parts + "/step-00000006/" + file), "\(file) differs after resume")
    }
    XCTAssertEqual(Jobs.checkpointStep(parts + "/latest"), 6)
    XCTAssertTrue(Jobs.rankLog(parts, rank: 1, contains: "resumed from \(parts)/step-00000003 at step 3"))

    let a = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000006/model.safetensors")).entries
    let b = try SafeTensors.read(URL(fileURLWithPath: other + "/step-00000006/model.safetensors")).entries
    let mid = try SafeTensors.read(URL(fileURLWithPath: whole + "/step-00000003/model.safetensors")).entries
    XCTAssertLessThanOrEqual(relativeDifference(a, b).0, 1e-4, "worst tensor \(relativeDifference(a, b).1)")
    // Steps 4–6 did move the parameters (so the comparisons above can fail).
    XCTAssertGreaterThan(relativeDifference(a, mid).0, 1e-3)
    XCTAssertTrue(Jobs.read(other + "/rank-0.log").contains("checkpoint written by 2 rank(s), resuming on 1"))
  }

}
