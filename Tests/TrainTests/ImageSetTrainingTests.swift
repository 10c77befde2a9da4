import Data
import Foundation
import Model
import XCTest

/// A user's own images end to end (issue 18): an image folder of RGB PNG and JPEG files packed
/// with `parallax data pack --images`, pretrained on with `--data images`, probed and
/// evaluated — and W ranks ≡ 1 rank on the step-1 gradient of the packed RGB data.
final class ImageSetTrainingTests: XCTestCase {
  /// 120 Fashion-MNIST training images, each tinted with its own colour (from the image
  /// index, not the class), as PNG (every fifth JPEG) in one folder per class
  /// (`parallax data tinted-fashion-mnist`); packed once at 28×28 RGB into parts of at most
  /// 0.05 MiB (22 records each: six parts).
  static let packed: String = {
    do {
      let root = Processes.temporaryDirectory("rgb-folder")
      let made = try Processes.parallax(np: 1, ["data", "tinted-fashion-mnist", "--out", root, "--count", "120"])
      guard made.status == 0 else { fatalError("tinted-fashion-mnist failed: \(made.stdout) \(made.stderr)") }
      let out = root + "-packed"
      let r = try Processes.parallax(
        np: 1,
        ["data", "pack", "--images", root, "--out", out, "--size", "28", "--channels", "3", "--max-part-mib", "0.05"])
      guard r.status == 0 else { fatalError("pack failed: \(r.stdout) \(r.stderr)") }
      return out
    } catch {
      fatalError("\(error)")
    }
  }()

  func testPackReportsTheSetAndRefusesToOverwrite() throws {
    let info = try ImageSetInfo.read(directory: Self.packed)
    XCTAssertEqual(info.count, 120)
    XCTAssertEqual(info.channels, 3)
    XCTAssertEqual(info.labelNames, ["class"])
    XCTAssertEqual(info.parts.map(\.count), [22, 22, 22, 22, 22, 10])
    XCTAssertEqual(Set(info.classNames[0]).count, info.classNames[0].count)
    XCTAssertTrue(info.mean.allSatisfy { $0 > 0.05 && $0 < 0.6 }, "\(info.mean)")
    let again = try Processes.parallax(
      np: 1, ["data", "pack", "--images", info.source, "--out", Self.packed, "--size", "28"])
    XCTAssertNotEqual(again.status, 0)
    XCTAssertTrue(again.stderr.contains("exists"), again.stderr)
    XCTAssertEqual(try ImageSetInfo.read(directory: Self.packed), info, "the existing set is untouched")
    let missing = try Processes.parallax(np: 1, ["pretrain", "--data", "images", "--data-dir", "/nonexistent/set", "--max-steps", "1"])
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stderr.contains("/nonexistent/set"), missing.stderr)
  }

  /// 1 rank with `pread` against 3 ranks reading through MPI-IO, collective and independent;
  /// each rank read exactly its 4 records of the step's 12 (its rank log says how many bytes).
  func testSGDGradientOnPackedRGBIsTheSameOnThreeRanksAsOnOne() throws {
    let common = ["--data", "images", "--data-dir", Self.packed, "--global-batch", "12", "--seed", "5", "--model", "conv4"]
    let (g1, p1, _) = try sgdGradientStep(np: 1, name: "rgb-sgd-1", common + ["--data-read", "pread"])
    XCTAssertEqual(g1["encoder.0.weight"]?.shape, [64, 3, 3, 3], "the first convolution reads three channels")
    for mode in ["mpiio", "mpiio-independent"] {
      let (g3, p3, dir) = try sgdGradientStep(np: 3, name: "rgb-sgd-3", common + ["--data-read", mode])
      assertSameTensors(g1, g3, rel: 2e-4, "conv4 RGB gradient, 3 ranks, \(mode)")
      assertSameTensors(p1, p3, rel: 1e-4, "conv4 RGB parameters after SGD, 3 ranks, \(mode)")
      let kind = mode == "mpiio" ? "collective" : "independent"
      for rank in 0..<3 {
        XCTAssertTrue(
          Jobs.rankLog(dir, rank: rank, contains: "data: read \(4 * 2352) record bytes through MPI-IO (\(kind))"),
          "rank \(rank), \(mode): " + Jobs.read(dir + "/rank-\(rank).log"))
      }
    }
  }

  func testPretrainProbeAndEvalOnPackedRGB() throws {
    let dir = Processes.temporaryDirectory("rgb-probe")
    let r = try Processes.parallax(
      np: 2,
      [
        "pretrain", "--data", "images", "--data-dir", Self.packed, "--model", "resnet18", "--global-batch", "16",
        "--max-steps", "2", "--threads", "1", "--run-dir", dir, "--probe", "--probe-epochs", "2",
      ])
    XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    XCTAssertTrue(r.stdout.contains("| features | dim | class accuracy | probe time |"), r.stdout)
    XCTAssertTrue(r.stdout.contains("| raw pixels | 2352 |"), r.stdout)
    XCTAssertTrue(r.stdout.contains("| majority class | - |"), r.stdout)
    XCTAssertTrue(r.stdout.contains("| class kNN accuracy |"), r.stdout)
    XCTAssertTrue(r.stdout.contains("| raw pixels | 2352 | "), r.stdout)
    // 120 images: 80/20 by index, so probes fit on ~96 and score on ~24. The report's kNN on the
    // trained encoder is the one `eval knn` computes from the checkpoint (same features, k = 20).
    let knn = try Processes.parallax(np: 1, ["eval", "knn", "--checkpoint", dir + "/latest", "--k", "20", "--layer", "pooled"])
    XCTAssertEqual(knn.status, 0, knn.stdout + knn.stderr)
    let evalLine = knn.stdout.split(separator: "\n").first { $0.hasPrefix("knn k=20 pooled class: ") }
    let value = try XCTUnwrap(evalLine?.split(separator: " ").last, knn.stdout)
    let kNNTable = try XCTUnwrap(r.stdout.range(of: "| class kNN accuracy |"), r.stdout)
    XCTAssertTrue(
      r.stdout[kNNTable.upperBound...].contains("| simclr resnet18 (pooled) | 512 | \(value) |"),
      "eval knn gave \(value): " + r.stdout)
    let probes = try JSONSerialization.jsonObject(with: XCTUnwrap(FileManager.default.contents(atPath: dir + "/probes.json")))
    let names = ((probes as? [String: Any])?["probes"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    for n in ["simclr resnet18 (pooled) kNN", "random resnet18 (pre-pool) kNN", "raw pixels kNN"] {
      XCTAssertTrue(names.contains(n), "\(n) not in probes.json: \(names)")
    }
  }
}
