import Foundation
import XCTest

@testable import Train

/// `parallax sweep`: groups of ranks (`MPI_Comm_split`) give each point the result one
/// data-parallel group gives it, and a stopped sweep continues without redoing finished
/// points.
final class SweepTests: XCTestCase {
  static let tiny = [
    "--values", "0,10", "--probe-epochs", "3", "--eval-limit", "64", "--kmeans-iterations", "20", "--threads", "1",
    "--method", "parallel-ae", "--model", "conv6", "--embedding-loss", "cosine", "--global-batch", "8", "--max-steps",
    "2", "--warmup-steps", "0", "--seed", "4", "--optimizer", "sgd", "--base-lr", "0.5", "--lr-scaling", "none",
    "--momentum", "0", "--weight-decay", "0",
  ]

  func sweep(np: Int, out: String, _ extra: [String]) throws -> Processes.Result {
    try Processes.parallax(np: np, ["sweep", "alpha", "--out", out] + Self.tiny + extra, timeout: 600)
  }

  func results(_ out: String) throws -> [SweepResult] {
    try (0..<2).map { i in
      let dirs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix(String(format: "point-%02d-", i)) }
      XCTAssertEqual(dirs.count, 1, "\(out): point \(i)")
      return try XCTUnwrap(try SweepResult.read(directory: out + "/" + dirs[0]), "point \(i) has no result")
    }
  }

  /// Two groups of one rank (each trains one point) against one group of two ranks (both
  /// points data-parallel): the same per-point results within the W ≡ 1 tolerance.
  func testTwoGroupsGiveTheResultsOfOneDataParallelGroup() throws {
    let split = Processes.temporaryDirectory("sweep-split")
    let whole = Processes.temporaryDirectory("sweep-whole")
    let a = try sweep(np: 2, out: split, ["--group-size", "1"])
    XCTAssertEqual(a.status, 0, a.stdout + a.stderr)
    XCTAssertTrue(a.stdout.contains("2 rank(s) in 2 group(s) of 1"), a.stdout)
    let b = try sweep(np: 2, out: whole, ["--group-size", "2"])
    XCTAssertEqual(b.status, 0, b.stdout + b.stderr)
    let (ra, rb) = (try results(split), try results(whole))
    for (x, y) in zip(ra, rb) {
      XCTAssertEqual(x.ranks, 1)
      XCTAssertEqual(y.ranks, 2)
      XCTAssertEqual(x.steps, 2)
      XCTAssertEqual(x.steps, y.steps)
      XCTAssertEqual(x.finalLoss, y.finalLoss, accuracy: 1e-4 * abs(y.finalLoss), "α = \(x.value): final loss")
      // 64 test samples: one sample is 1/64 of an accuracy.
      for (p, q, what) in [
        (x.linear, y.linear, "linear"), (x.knn, y.knn, "kNN"), (x.kmeansAccuracy, y.kmeansAccuracy, "k-means"),
      ] {
        XCTAssertEqual(p, q, accuracy: 1.0 / 64 + 1e-9, "α = \(x.value): \(what)")
      }
      XCTAssertEqual(x.kmeansNMI, y.kmeansNMI, accuracy: 0.02, "α = \(x.value): NMI")
      XCTAssertEqual(x.testSamples, 64)
    }
    // α changes the run: the comparison above compares two different points.
    XCTAssertNotEqual(ra[0].finalLoss, ra[1].finalLoss)
    for file in ["results.csv", "results.md", "alpha.svg"] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: split + "/" + file), file)
    }
    let csv = Jobs.read(split + "/results.csv").split(separator: "\n")
    XCTAssertEqual(csv.count, 3, "header and two points")
    XCTAssertTrue(csv[1].hasPrefix("0,2,"), String(csv[1]))
    XCTAssertTrue(Jobs.read(split + "/alpha.svg").contains("α = 0"), "α = 0 drawn as a level on the log axis")
  }

  /// Stopped after its first point, the sweep continues: the finished point's result file
  /// is not rewritten (same bytes and modification time), the other point runs, and the
  /// results equal those of an uninterrupted sweep on the same ranks. A rerun with other
  /// values is refused without touching the directory.
  func testStoppedSweepResumesWithoutRedoingFinishedPoints() throws {
    let whole = Processes.temporaryDirectory("sweep-uninterrupted")
    let parts = Processes.temporaryDirectory("sweep-parts")
    let w = try sweep(np: 1, out: whole, [])
    XCTAssertEqual(w.status, 0, w.stdout + w.stderr)
    let first = try sweep(np: 1, out: parts, ["--debug-stop-after-points", "1"])
    XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
    XCTAssertTrue(first.stdout.contains("1 point(s) run, 0 skipped"), first.stdout)
    XCTAssertTrue(first.stdout.contains("not complete"), first.stdout)
    let dir0 = try FileManager.default.contentsOfDirectory(atPath: parts).first { $0.hasPrefix("point-00-") }!
    let file0 = parts + "/" + dir0 + "/result.json"
    let bytes0 = try Data(contentsOf: URL(fileURLWithPath: file0))
    let mtime0 = try FileManager.default.attributesOfItem(atPath: file0)[.modificationDate] as! Date
    XCTAssertEqual(Jobs.read(parts + "/results.csv").split(separator: "\n").count, 2, "one point so far")

    let refused = try sweep(np: 1, out: parts, ["--values", "0,1"])
    XCTAssertNotEqual(refused.status, 0)
    XCTAssertTrue(refused.stderr.contains("sweep.json describes another sweep"), refused.stderr)

    let second = try sweep(np: 1, out: parts, [])
    XCTAssertEqual(second.status, 0, second.stdout + second.stderr)
    XCTAssertTrue(second.stdout.contains("1 point(s) run, 1 skipped"), second.stdout)
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file0)), bytes0)
    XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: file0)[.modificationDate] as? Date, mtime0)
    // Same ranks, same keyed randomness: every figure but the times is the uninterrupted one.
    for (x, y) in zip(try results(parts), try results(whole)) {
      var (a, b) = (x, y)
      (a.pretrainSeconds, a.evalSeconds, b.pretrainSeconds, b.evalSeconds) = (0, 0, 0, 0)
      XCTAssertEqual(a, b)
    }
    XCTAssertEqual(Jobs.read(parts + "/results.csv").split(separator: "\n").count, 3)

    // A point stopped in the middle of its training (here: a checkpoint of step 1 of 2 in its
    // directory, as a stopped sweep leaves it) continues from that checkpoint.
    let mid = Processes.temporaryDirectory("sweep-mid")
    let pretrainFlags = Array(Self.tiny.drop { $0 != "--method" })
    let p = try Processes.parallax(
      np: 1, ["pretrain", "--alpha", "0", "--run-dir", mid + "/point-00-alpha-0", "--stop-after", "1"] + pretrainFlags)
    XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
    let m = try sweep(np: 1, out: mid, [])
    XCTAssertEqual(m.status, 0, m.stdout + m.stderr)
    XCTAssertTrue(m.stdout.contains("resumed \(mid)/point-00-alpha-0 at step 1"), m.stdout)
    for (x, y) in zip(try results(mid), try results(whole)) {
      var (a, b) = (x, y)
      (a.pretrainSeconds, a.evalSeconds, b.pretrainSeconds, b.evalSeconds) = (0, 0, 0, 0)
      XCTAssertEqual(a, b, "resumed point \(x.value)")
    }
  }

  /// Bad values are refused before anything is written, naming the flag.
  func testBadValuesAreRefusedNamingTheFlag() throws {
    let out = Processes.temporaryDirectory("sweep-bad")
    for (values, message) in [("0,x", "--values"), ("0,0", "listed twice"), ("0,-1", "must be ≥ 0")] {
      let r = try Processes.parallax(np: 1, ["sweep", "alpha", "--out", out + "/s", "--values", values, "--model", "conv6", "--method", "parallel-ae"])
      XCTAssertNotEqual(r.status, 0, values)
      XCTAssertTrue(r.stderr.contains(message), "\(values): \(r.stderr)")
    }
    let s = try Processes.parallax(np: 1, ["sweep", "strength", "--out", out + "/s", "--values", "1,3", "--model", "conv6", "--method", "dae"])
    XCTAssertNotEqual(s.status, 0)
    XCTAssertTrue(s.stderr.contains("must be in [0, 2]"), s.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/s"), "nothing written")
  }
}
