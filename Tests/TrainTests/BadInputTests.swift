import Foundation
import XCTest

/// Bad input ends every rank with one clear line and a non-zero status, without hanging.
final class BadInputTests: XCTestCase {
  func testBatchNotDivisibleByRanks() throws {
    let r = try Processes.parallax(np: 2, ["pretrain", "--global-batch", "33", "--max-steps", "1", "--run-dir", Processes.temporaryDirectory("div")], timeout: 60)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains("not divisible by the 2 ranks"), r.stderr)
  }

  func testUnknownModelAndMethod() throws {
    let m = try Processes.parallax(np: 1, ["pretrain", "--model", "vgg99"], timeout: 60)
    XCTAssertNotEqual(m.status, 0)
    XCTAssertTrue(m.stderr.contains("unknown model 'vgg99'"), m.stderr)
    let s = try Processes.parallax(np: 1, ["pretrain", "--method", "byol9"], timeout: 60)
    XCTAssertNotEqual(s.status, 0)
    XCTAssertTrue(s.stderr.contains("unknown method 'byol9'"), s.stderr)
  }

  func testMissingDataNamesDebianPackage() throws {
    let r = try Processes.parallax(np: 2, ["pretrain", "--data-dir", "/nonexistent/fmnist", "--global-batch", "32", "--max-steps", "1", "--run-dir", Processes.temporaryDirectory("nodata")], timeout: 60)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains("dataset-fashion-mnist"), r.stderr)
    XCTAssertTrue(r.stderr.contains("/nonexistent/fmnist"), r.stderr)
  }

  func testUnknownConfigKeyNamesFile() throws {
    let dir = Processes.temporaryDirectory("yaml")
    let path = dir + "/bad.yaml"
    try "model: conv4\nglobal_batch: 12\n".write(toFile: path, atomically: true, encoding: .utf8)
    let r = try Processes.parallax(np: 1, ["pretrain", "--config", path], timeout: 60)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains(path) && r.stderr.contains("global_batch"), r.stderr)
  }

  /// A diverging run stops at the step whose loss is not finite and writes nothing after it.
  func testNaNLossStopsWithStepAndWritesNothing() throws {
    let dir = Processes.temporaryDirectory("nan")
    let r = try Processes.parallax(
      np: 2,
      [
        "pretrain", "--global-batch", "32", "--max-steps", "6", "--optimizer", "sgd", "--base-lr", "1e30",
        "--lr-scaling", "none", "--warmup-steps", "0", "--run-dir", dir, "--threads", "1",
      ], timeout: 120)
    XCTAssertNotEqual(r.status, 0)
    XCTAssertTrue(r.stderr.contains("at step"), r.stderr)
    let written = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    XCTAssertFalse(written.contains { $0.hasPrefix("step-") }, "checkpoint written after NaN: \(written)")
  }
}
