import Foundation
import XCTest

/// `model.safetensors` read back by Python's `safetensors` (the PyTorch ecosystem's reader),
/// and `parallax export` writing the encoder alone.
final class ExportTests: XCTestCase {
  /// Checks names (PyTorch `nn.Sequential` state_dict keys of conv4 and the head), shapes
  /// and values against the summary Parallax wrote. Exits non-zero on any mismatch.
  static let script = #"""
    import json, subprocess, sys
    try:
        import numpy, safetensors
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "safetensors", "numpy"], check=False)
        try:
            import numpy, safetensors
        except ImportError as e:
            sys.exit(f"FAIL: python3 has no safetensors/numpy even after pip install: {e}")
    import numpy as np
    from safetensors.numpy import load_file

    model_path, encoder_path, summary_path = sys.argv[1:4]
    model, encoder = load_file(model_path), load_file(encoder_path)
    summary = json.load(open(summary_path))
    errors = []

    conv4 = []
    for i in (0, 4, 8, 12):
        conv4 += [f"{i}.weight", f"{i}.bias", f"{i + 1}.weight", f"{i + 1}.bias", f"{i + 1}.running_mean", f"{i + 1}.running_var"]
    head = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight", "3.bias"]
    expected = {"encoder." + k for k in conv4} | {"head." + k for k in head}
    if set(model) != expected:
        errors.append(f"model keys {sorted(set(model) ^ expected)} differ from PyTorch's conv4 + head state_dict")
    if set(encoder) != set(conv4):
        errors.append(f"encoder keys {sorted(set(encoder) ^ set(conv4))} differ from conv4's state_dict")
    shapes = {"0.weight": (64, 1, 3, 3), "4.weight": (64, 64, 3, 3), "13.running_var": (64,)}
    for k, s in shapes.items():
        if encoder.get(k) is not None and encoder[k].shape != s:
            errors.append(f"encoder {k} has shape {encoder[k].shape}, expected {s}")

    def check(tensors, reported, what):
        if set(tensors) != set(reported):
            errors.append(f"{what}: keys differ from Parallax's report")
        for k, t in tensors.items():
            r = reported.get(k)
            if r is None:
                continue
            if t.dtype != np.float32:
                errors.append(f"{what} {k}: dtype {t.dtype}")
            if list(t.shape) != r["shape"]:
                errors.append(f"{what} {k}: shape {t.shape} vs reported {r['shape']}")
            flat = t.reshape(-1)
            if not np.array_equal(flat[: len(r["first"])], np.array(r["first"], dtype=np.float32)):
                errors.append(f"{what} {k}: first values {flat[:4]} vs reported {r['first']}")
            for name, value in (("sum", flat.astype(np.float64).sum()), ("sumOfSquares", (flat.astype(np.float64) ** 2).sum())):
                if not np.isclose(value, r[name], rtol=1e-9, atol=1e-9):
                    errors.append(f"{what} {k}: {name} {value!r} vs reported {r[name]!r}")

    check(model, summary["model"], "model.safetensors")
    check(encoder, summary["encoder"], "encoder.safetensors")
    for k in encoder:
        if not np.array_equal(encoder[k], model["encoder." + k]):
            errors.append(f"encoder {k} differs from model encoder.{k}")
    # Something was trained: BN running statistics left their initial values.
    if np.allclose(model["encoder.1.running_var"], 1.0):
        errors.append("encoder.1.running_var is still all ones")
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"OK {len(model)} model tensors, {len(encoder)} encoder tensors")
    """#

  func testPythonReadsCheckpointAndExport() throws {
    let dir = Processes.temporaryDirectory("export")
    let r = try Processes.parallax(np: 1, ["pretrain", "--global-batch", "16", "--max-steps", "1", "--threads", "1", "--run-dir", dir], timeout: 90)
    XCTAssertEqual(r.status, 0, r.stderr)
    let e = try Processes.run(
      Processes.parallax,
      ["export", "--checkpoint", dir + "/latest", "--out", dir + "/encoder.safetensors", "--summary", dir + "/summary.json"],
      timeout: 60)
    XCTAssertEqual(e.status, 0, e.stderr)
    XCTAssertTrue(e.stdout.contains("exported 24 encoder tensors"), e.stdout)
    let scriptPath = dir + "/check.py"
    try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
    let python = ["/usr/bin/env"]
    let p = try Processes.run(
      python[0], ["python3", scriptPath, dir + "/latest/model.safetensors", dir + "/encoder.safetensors", dir + "/summary.json"],
      timeout: 300)
    XCTAssertEqual(p.status, 0, "python check failed:\n\(p.stdout)\n\(p.stderr)")
    XCTAssertTrue(p.stdout.contains("OK 32 model tensors, 24 encoder tensors"), p.stdout + p.stderr)

    // A damaged checkpoint is refused by export too, naming the file.
    try FileManager.default.removeItem(atPath: dir + "/latest/model.safetensors")
    let bad = try Processes.run(Processes.parallax, ["export", "--checkpoint", dir + "/latest", "--out", dir + "/x.safetensors"], timeout: 60)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stderr.contains(dir + "/latest/model.safetensors: missing"), bad.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.safetensors"))
  }
}
