import Foundation
import Model
import XCTest

@testable import Train

/// `--conv4-width`: every method that builds conv4 builds it at the configured width, the
/// option's errors name it, and a run's checkpoint carries the width to `eval`, `export` and
/// `--resume`.
final class Conv4WidthTests: XCTestCase {
  /// Each conv4 method's encoder at width 24: the first and the last conv have 24 output
  /// channels and the feature is 24-d per task (pre-pool 24 × 3 × 3 on 28×28).
  func testEveryConv4MethodBuildsTheConfiguredWidth() throws {
    let methods: [Method] = [.simclr, .simsiam, .transformPred, .mtslvr, .barlow, .byol, .moco, .supervised, .amortised]
    for method in methods {
      var c = PretrainConfig()
      c.method = method
      if method == .supervised { c.data = .multiFashion }
      c.conv4Width = 24
      try c.validate()
      let m = try Methods.make(c, collective: LocalCollective())
      let first = try XCTUnwrap(m.arena.parameter(named: "encoder.0.weight"), "\(method)")
      let last = try XCTUnwrap(m.arena.parameter(named: "encoder.12.weight"), "\(method)")
      let inChannels = c.sampleShape.c
      XCTAssertEqual(first.count, 24 * inChannels * 9, "\(method) encoder.0.weight")
      XCTAssertEqual(last.count, 24 * 24 * 9, "\(method) encoder.12.weight")
      XCTAssertEqual(m.encoder.featureDim % 24, 0, "\(method) featureDim \(m.encoder.featureDim)")
      XCTAssertNotEqual(m.encoder.featureDim % 64, 0, "\(method) featureDim \(m.encoder.featureDim) is still 64-wide")
      if method == .simclr {
        XCTAssertEqual(m.encoder.featureDim, 24)
        XCTAssertEqual(m.encoder.prePoolDim, 24 * 3 * 3)
      }
    }
  }

  func testBadWidthsAreErrorsNamingTheOption() throws {
    for (flags, message) in [
      (["--conv4-width", "0"], "--conv4-width must be in 1…1024 (got 0)"),
      (["--conv4-width", "4096"], "--conv4-width must be in 1…1024 (got 4096)"),
      (["--conv4-width", "96", "--model", "resnet18"], "conv4-width 96 applies to model conv4 only (model is resnet18)"),
    ] {
      var c = PretrainConfig()
      XCTAssertThrowsError(
        try {
          try OptionArguments.apply(flags, to: &c)
          try c.validate()
        }(), "\(flags)"
      ) { error in
        XCTAssertTrue("\(error)".contains(message), "\(flags): \(error)")
      }
    }
    // The default width goes with every model.
    var c = PretrainConfig()
    try OptionArguments.apply(["--model", "resnet18"], to: &c)
    XCTAssertNoThrow(try c.validate())
  }

  /// A width-16 run: `eval linear` rebuilds the 16-wide encoder from the checkpoint (16-d
  /// pooled, 144-d pre-pool features), `export` describes it, and resuming at another width
  /// is refused without touching the checkpoint.
  func testCheckpointCarriesTheWidthToEvalExportAndResume() throws {
    let dir = Processes.temporaryDirectory("conv4-width")
    let base = ["pretrain", "--global-batch", "16", "--threads", "1", "--run-dir", dir, "--conv4-width", "16"]
    let r = try Processes.parallax(np: 1, base + ["--max-steps", "1"], timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    let e = try Processes.parallax(
      np: 1, ["eval", "linear", "--checkpoint", dir + "/latest", "--limit", "300", "--epochs", "1", "--layer", "both", "--threads", "1"],
      timeout: 120)
    XCTAssertEqual(e.status, 0, e.stderr)
    // "linear simclr conv4 (pooled) class: 15.33% (16-d, 300 train / 300 test samples, 2.9 s)"
    let lines = e.stdout.split(separator: "\n").filter { $0.hasPrefix("linear ") }
    XCTAssertTrue(lines.contains { $0.contains("(pooled) class: ") && $0.contains("% (16-d,") }, e.stdout)
    XCTAssertTrue(lines.contains { $0.contains("(pre-pool) class: ") && $0.contains("% (144-d,") }, e.stdout)

    let file = dir + "/encoder.safetensors"
    let x = try Processes.run(Processes.parallax, ["export", "--checkpoint", dir + "/latest", "--out", file], timeout: 60)
    XCTAssertEqual(x.status, 0, x.stderr)
    let m = try SafeTensors.decode(try Foundation.Data(contentsOf: URL(fileURLWithPath: file)), path: file).metadata
    XCTAssertTrue(m["architecture_options"]?.contains("\"width\":16") == true, m["architecture_options"] ?? "")
    XCTAssertTrue(m["pytorch"]?.contains("Conv2d(c, 16, 3, 1, 1), BatchNorm2d(16)") == true, m["pytorch"] ?? "")
    XCTAssertTrue(m["pytorch"]?.contains("# 16, 144") == true, m["pytorch"] ?? "")

    let before = Jobs.snapshot(dir)
    let again = try Processes.parallax(
      np: 1, base.dropLast(2) + ["--conv4-width", "32", "--max-steps", "2", "--resume", "latest"], timeout: 60)
    XCTAssertNotEqual(again.status, 0)
    XCTAssertTrue(again.stderr.contains("conv4Width 16 (checkpoint) vs 32 (this run)"), again.stderr)
    XCTAssertEqual(Jobs.snapshot(dir), before, "files changed after the refused resume")
  }
}
