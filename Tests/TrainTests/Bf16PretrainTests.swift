import Foundation
import Model
import XCTest

/// `--precision bf16` end to end: the flag's errors, resume compatibility, and one SGD step's
/// gradient (W ≡ 1 at 2 ranks; against the fp32 step) with `GradientInvarianceTests`' helpers.
final class Bf16PretrainTests: XCTestCase {
  func testUnknownPrecisionIsAnErrorNamingTheFlagAndChoices() throws {
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--precision", "fp16", "--max-steps", "1", "--run-dir", Processes.temporaryDirectory("prec")],
      timeout: 60)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains("--precision") && r.stderr.contains("fp32 | bf16"), r.stderr)
  }

  /// A checkpoint of an fp32 run does not resume in bf16 (`precision` must match).
  func testResumeRefusesAnotherPrecision() throws {
    let dir = Processes.temporaryDirectory("prec-resume")
    let base = [
      "pretrain", "--global-batch", "8", "--warmup-steps", "0", "--seed", "5", "--threads", "1", "--run-dir", dir,
    ]
    let first = try Processes.parallax(np: 1, base + ["--max-steps", "1"], timeout: 120)
    XCTAssertEqual(first.status, 0, first.stderr)
    let again = try Processes.parallax(
      np: 1, base + ["--max-steps", "2", "--resume", "latest", "--precision", "bf16"], timeout: 120)
    XCTAssertNotEqual(again.status, 0)
    XCTAssertTrue(again.stderr.contains("precision fp32 (checkpoint) vs bf16 (this run)"), again.stderr)
    XCTAssertEqual(Jobs.checkpointStep(dir + "/latest"), 1, "the refused resume wrote a checkpoint")
  }
}

extension GradientInvarianceTests {
  /// The bf16 step's gradient (conv and linear GEMMs in bf16) at 2 ranks against 1 rank, at the
  /// fp32 bound: bf16 rounds each operand element alone, so a rank's share rounds exactly as
  /// the same samples would in the 1-rank batch, and only fp32 reduction orders differ — except
  /// that an activation a sync-BN statistic moved by an fp32 ulp can round to the other bf16
  /// neighbour, a 2⁻⁸ change of one product among thousands (measured worst printed).
  /// Then the bf16 step against the fp32 step, tensor by tensor, within 2⁻⁵ of each tensor's
  /// largest gradient: an empirical bound (rounding the GEMM operands carries through BN and
  /// the loss; no element bound survives BN's normalisation), with the worst measured printed.
  func testBf16StepGradientIsRankInvariantAndCloseToFp32() throws {
    let fp32 = Self.conv4 + ["--method", "simclr"]
    let bf16 = fp32 + ["--precision", "bf16"]
    let runs = try compare("simclr conv4 bf16", bf16, ranks: [2])
    XCTAssertTrue(runs[2]!.run.stdout.contains("precision bf16"), runs[2]!.run.stdout)
    let a = try reference(fp32), b = try reference(bf16)
    let tol = GradientTolerance(rel: 1.0 / 32, zeroClass: GradientTolerance.fp32.zeroClass, zero: GradientTolerance.fp32.zero)
    let worst = assertSame(a.grads, b.grads, tol, "simclr conv4 bf16 vs fp32 gradient")
    // The bf16 step is not the fp32 step (the flag reached the GEMMs).
    XCTAssertGreaterThan(worst, 1e-4, "bf16 gradient equals fp32's to 1e-4: --precision not applied?")
  }
}
