import Foundation
import Model
import XCTest

@testable import Train

/// Self-describing exports: what the safetensors metadata of `export` and of checkpoints
/// says, and the PyTorch lines `parallax export --help` shows.
final class ModelCardTests: XCTestCase {
  func export() throws -> (dir: String, file: String) {
    let dir = try TinyRuns.oneRankSimCLR()
    let file = dir + "/encoder.safetensors"
    let e = try Processes.run(Processes.parallax, ["export", "--checkpoint", dir + "/latest", "--out", file], timeout: 60)
    XCTAssertEqual(e.status, 0, e.stderr)
    XCTAssertTrue(e.stdout.contains("load and feed it in PyTorch"), e.stdout)
    return (dir, file)
  }

  func metadata(_ path: String) throws -> [String: String] {
    let data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
    return try SafeTensors.decode(data, path: path).metadata
  }

  func json(_ s: String?) -> [String: Any] {
    (s.flatMap { try? JSONSerialization.jsonObject(with: Foundation.Data($0.utf8)) } as? [String: Any]) ?? [:]
  }

  func testExportAndCheckpointSayHowToFeedThem() throws {
    let (dir, file) = try export()
    for (path, prefix) in [(file, ""), (dir + "/latest/model.safetensors", "encoder.")] {
      let m = try metadata(path)
      XCTAssertEqual(m["format"], "pt", path)
      XCTAssertEqual(m["input_shape"], "[1, 28, 28]", path)
      XCTAssertEqual(m["architecture"], "conv4", path)
      XCTAssertEqual(m["method"], "simclr", path)
      XCTAssertEqual(m["step"], "2", path)
      XCTAssertEqual(m["tensor_prefix"], prefix, path)
      let norm = json(m["normalization"])
      XCTAssertEqual(norm["scale"] as? Double, 255, path)
      XCTAssertEqual((norm["mean"] as? [Double])?.first ?? 0, 0.2860, accuracy: 1e-6, path)
      XCTAssertEqual((norm["std"] as? [Double])?.first ?? 0, 0.3530, accuracy: 1e-6, path)
      XCTAssertTrue(m["input"]?.contains("(x/255 - 0.2860)/0.3530") == true, m["input"] ?? "")
      let options = json(m["architecture_options"])
      XCTAssertEqual(options["width"] as? Int, 64)
      XCTAssertEqual(options["in_channels"] as? Int, 1)
      let layers = json(m["feature_layers"])
      XCTAssertEqual((layers["pooled"] as? [String: Any])?["dim"] as? Int, 64, path)
      XCTAssertEqual((layers["pre-pool"] as? [String: Any])?["dim"] as? Int, 576, path)
      XCTAssertEqual(m["parallax_version"], BuildInfo.version)
      // Built from a git checkout: a hex commit (with +dirty while edited); else `unknown`.
      let commit = m["parallax_commit"] ?? ""
      if FileManager.default.fileExists(atPath: TestTools.repoRoot + "/.git") {
        XCTAssertNotNil(commit.range(of: #"^[0-9a-f]{12}(\+dirty)?$"#, options: .regularExpression), commit)
      } else {
        XCTAssertEqual(commit, "unknown")
      }
      XCTAssertEqual(m["pytorch"], ModelCard.pytorchLines(PretrainConfig(), path: "encoder.safetensors")?.joined(separator: "\n"))
      if prefix.isEmpty {
        let config = try JSONDecoder().decode(PretrainConfig.self, from: Foundation.Data((m["config"] ?? "").utf8))
        XCTAssertEqual(config.globalBatch, 16)
      } else {
        XCTAssertNil(m["config"], "a checkpoint's configuration is in state.json")
      }
    }
  }

  /// The lines in `export --help` are printed whole (not wrapped) and are valid Python.
  func testHelpShowsValidPythonLines() throws {
    let h = try Processes.run(Processes.parallax, ["export", "--help"], timeout: 30)
    XCTAssertEqual(h.status, 0, h.stderr)
    let code = try pythonFromHelp(h.stdout)
    let expected = ModelCard.pytorchLines(PretrainConfig(), path: "encoder.safetensors") ?? []
    XCTAssertEqual(code, expected, h.stdout)
    XCTAssertTrue(code.contains { $0.contains("(images / 255 - 0.2860) / 0.3530") }, "\(code)")
    let p = try Processes.run("/usr/bin/env", ["python3", "-c", "import ast, sys; ast.parse(sys.argv[1])", code.joined(separator: "\n")], timeout: 30)
    XCTAssertEqual(p.status, 0, "not valid Python:\n\(code.joined(separator: "\n"))\n\(p.stderr)")
  }

  /// Runs the help's lines on 64 Fashion-MNIST test images when torch is installed: the
  /// export loads with strict=True and gives 64-d pooled and 576-d pre-pool features.
  func testPyTorchLinesRunWhenTorchIsInstalled() throws {
    let probe = try Processes.run("/usr/bin/env", ["python3", "-c", "import torch, safetensors, numpy"], timeout: 60)
    guard probe.status == 0 else {
      let message = "torch (with safetensors and numpy) is not installed: the PyTorch lines of `parallax export --help` were NOT run (SKIPPED)"
      FileHandle.standardError.write(Data("\n*** \(message) ***\n\n".utf8))
      throw XCTSkip(message)
    }
    let (dir, _) = try export()
    let h = try Processes.run(Processes.parallax, ["export", "--help"], timeout: 30)
    let code = try pythonFromHelp(h.stdout).joined(separator: "\n")
    let script = """
      import gzip, os, numpy as np, torch
      os.chdir(\(String(reflecting: dir)))
      raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
      images = torch.tensor(np.frombuffer(raw, np.uint8, offset=16)[: 64 * 784].reshape(64, 1, 28, 28).astype(np.float32))
      with torch.no_grad():
      \(code.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
          assert tuple(pooled.shape) == (64, 64) and tuple(pre_pool.shape) == (64, 576), (pooled.shape, pre_pool.shape)
          assert torch.isfinite(pre_pool).all()
      print("OK torch", tuple(pooled.shape), tuple(pre_pool.shape))
      """
    let p = try Processes.run("/usr/bin/env", ["python3", "-c", script], timeout: 300)
    XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
    XCTAssertTrue(p.stdout.contains("OK torch (64, 64) (64, 576)"), p.stdout + p.stderr)
  }

  func pythonFromHelp(_ help: String) throws -> [String] {
    let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard let a = lines.firstIndex(of: "# --- PyTorch ---"), let b = lines.firstIndex(of: "# --- end ---"), a < b else {
      XCTFail("no PyTorch lines in export --help:\n\(help)")
      return []
    }
    return Array(lines[(a + 1)..<b])
  }
}
