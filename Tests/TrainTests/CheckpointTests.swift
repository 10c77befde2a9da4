import Foundation
import Model
import XCTest

@testable import Train

/// Checkpoint files in process: what is refused, with which message, and what `latest`
/// falls back to.
final class CheckpointTests: XCTestCase {
  func arena(_ fill: Float) -> ParameterArena {
    let a = ParameterArena()
    _ = a.register("encoder.0.weight", shape: [4, 1, 3, 3], initializer: .zeros)
    _ = a.register("encoder.0.bias", shape: [4], kind: .biasOrNorm, initializer: .zeros)
    _ = a.registerBuffer("encoder.1.running_mean", shape: [4], initializer: .zeros)
    a.allocate(seed: 1)
    for r in a.parameterRanges { a.set(r, (0..<r.count).map { fill + Float($0) }) }
    return a
  }

  /// A run directory with checkpoints of `steps`, keeping them all.
  func run(_ name: String, steps: [Int], keep: Int = 10) throws -> String {
    let dir = Processes.temporaryDirectory(name)
    for s in steps {
      let a = arena(Float(s))
      let momentum = a.parameterRanges.map { SafeTensors.Entry(name: "momentum.\($0.name)", shape: $0.shape, values: [Float](repeating: 0.5, count: $0.count)) }
      var config = PretrainConfig()
      config.runDir = dir
      try Checkpoint.write(
        runDir: dir, arena: a, optimizerState: momentum,
        state: CheckpointState(config: config, step: s, epoch: 0, batchInEpoch: s, worldSize: 1, seed: 0), keep: keep)
    }
    return dir
  }

  func assertRefused(_ dir: String, naming file: String, saying reason: String, line: UInt = #line) {
    XCTAssertThrowsError(try Checkpoint.load(dir), line: line) { error in
      let text = "\(error)"
      XCTAssertTrue(text.contains(dir + "/" + file), "message does not name the file: \(text)", line: line)
      XCTAssertTrue(text.contains(reason), "message does not say '\(reason)': \(text)", line: line)
    }
  }

  func testRoundTrip() throws {
    let dir = try run("ck-roundtrip", steps: [3])
    let ck = try Checkpoint.load(dir + "/latest")
    XCTAssertEqual(ck.state.step, 3)
    XCTAssertEqual(ck.model["encoder.0.bias"]?.values, [3, 4, 5, 6])
    XCTAssertEqual(ck.optimizer["momentum.encoder.0.weight"]?.values.count, 36)
    XCTAssertEqual(ck.state.sizes?["model.safetensors"], Int(try FileManager.default.attributesOfItem(atPath: dir + "/latest/model.safetensors")[.size] as! UInt64))
  }

  func testFlippedByteMissingFileAndTruncatedTensorAreRefused() throws {
    let dir = try run("ck-corrupt", steps: [1, 2, 3])
    let (one, two, three) = (dir + "/step-00000001", dir + "/step-00000002", dir + "/step-00000003")
    // A flipped byte inside a tensor's values.
    var bytes = try Data(contentsOf: URL(fileURLWithPath: one + "/model.safetensors"))
    bytes[bytes.count - 7] ^= 0x01
    try bytes.write(to: URL(fileURLWithPath: one + "/model.safetensors"))
    assertRefused(one, naming: "model.safetensors", saying: "sha256 does not match")
    // A missing file.
    try FileManager.default.removeItem(atPath: two + "/optimizer.safetensors")
    assertRefused(two, naming: "optimizer.safetensors", saying: "missing")
    // A truncated tensor (the file cut short).
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: three + "/model.safetensors"))
    let size = try handle.seekToEnd()
    try handle.truncate(atOffset: size - 10)
    try handle.close()
    assertRefused(three, naming: "model.safetensors", saying: "truncated: \(size - 10) of \(size) bytes")
  }

  func testLatestFallsBackToPreviousGoodCheckpoint() throws {
    let dir = try run("ck-fallback", steps: [1, 2, 3])
    try FileManager.default.removeItem(atPath: dir + "/step-00000003/model.safetensors")
    let r = try Checkpoint.loadForResume("latest", runDir: dir)
    XCTAssertEqual(r.dir, dir + "/step-00000002")
    XCTAssertEqual(r.loaded.state.step, 2)
    XCTAssertEqual(r.notes.count, 2, "\(r.notes)")
    XCTAssertTrue(r.notes[0].contains("refused checkpoint \(dir)/step-00000003") && r.notes[0].contains("model.safetensors: missing"), r.notes[0])
    XCTAssertTrue(r.notes[1].contains("falling back to the previous good checkpoint \(dir)/step-00000002"), r.notes[1])
    // An explicitly named directory is never replaced by another.
    XCTAssertThrowsError(try Checkpoint.loadForResume(dir + "/step-00000003", runDir: dir))
    // Nothing usable: one error listing every refusal.
    for s in ["00000001", "00000002"] { try FileManager.default.removeItem(atPath: "\(dir)/step-\(s)/state.json") }
    XCTAssertThrowsError(try Checkpoint.loadForResume("latest", runDir: dir)) { error in
      XCTAssertTrue("\(error)".contains("no usable checkpoint") && "\(error)".contains("step-00000001/state.json: missing"), "\(error)")
    }
  }

  /// `latest` follows the run's lineage: checkpoints of later steps left by a run that
  /// was resumed from an earlier one are not candidates, and pruning leaves them alone.
  /// Rank 0 killed between writing `step-N.tmp/` and renaming it (simulated: a real kill at
  /// that instant is a race, so the half-written directory is made by hand — a copy of the
  /// previous checkpoint whose state says step 2 and whose model is cut short): `latest` still
  /// names step 1, it loads without a fallback note, the temp directory is never listed or
  /// taken, and the resumed run's own step-2 checkpoint replaces it.
  func testHalfWrittenTempDirectoryIsNeverTaken() throws {
    let dir = try run("ckpt-stale-tmp", steps: [1])
    let fm = FileManager.default
    let tmp = dir + "/step-00000002.tmp"
    try fm.copyItem(atPath: dir + "/step-00000001", toPath: tmp)
    let statePath = tmp + "/state.json"
    let state = try String(contentsOfFile: statePath, encoding: .utf8)
      .replacingOccurrences(of: "\"step\" : 1", with: "\"step\" : 2")
    try state.write(toFile: statePath, atomically: false, encoding: .utf8)
    let model = try Foundation.Data(contentsOf: URL(fileURLWithPath: tmp + "/model.safetensors"))
    try model.prefix(model.count / 2).write(to: URL(fileURLWithPath: tmp + "/model.safetensors"))

    XCTAssertEqual(Checkpoint.latestTarget(runDir: dir), dir + "/step-00000001")
    XCTAssertEqual(Checkpoint.list(runDir: dir), [dir + "/step-00000001"])
    let (chosen, loaded, notes) = try Checkpoint.loadForResume("latest", runDir: dir)
    XCTAssertEqual(chosen, dir + "/step-00000001")
    XCTAssertEqual(loaded.state.step, 1)
    XCTAssertEqual(notes, [])
    XCTAssertEqual(loaded.model["encoder.0.weight"]?.values, (0..<36).map { 1 + Float($0) })

    let a = arena(2)
    var config = PretrainConfig()
    config.runDir = dir
    try Checkpoint.write(
      runDir: dir, arena: a, optimizerState: [],
      state: CheckpointState(config: config, step: 2, epoch: 0, batchInEpoch: 2, worldSize: 1, seed: 0), keep: 10)
    XCTAssertFalse(fm.fileExists(atPath: tmp), "the stale temp directory is replaced, not left beside")
    XCTAssertEqual(Checkpoint.latestTarget(runDir: dir), dir + "/step-00000002")
    XCTAssertEqual(try Checkpoint.load(dir + "/latest").model["encoder.0.weight"]?.values, (0..<36).map { 2 + Float($0) })
  }

  func testKeepPrunesOnlyUpToTheNewestStep() throws {
    let dir = try run("ck-keep", steps: [1, 2, 3, 4], keep: 2)
    XCTAssertEqual(Checkpoint.list(runDir: dir).map { ($0 as NSString).lastPathComponent }, ["step-00000003", "step-00000004"])
    // Resumed from step 3, the run writes step 4 again and then 5 … but here a stale
    // step-9 from an abandoned run exists.
    try FileManager.default.copyItem(atPath: dir + "/step-00000004", toPath: dir + "/step-00000009")
    let a = arena(5)
    var config = PretrainConfig()
    config.runDir = dir
    try Checkpoint.write(
      runDir: dir, arena: a, optimizerState: [],
      state: CheckpointState(config: config, step: 5, epoch: 0, batchInEpoch: 5, worldSize: 1, seed: 0), keep: 2)
    XCTAssertEqual(
      Checkpoint.list(runDir: dir).map { ($0 as NSString).lastPathComponent },
      ["step-00000004", "step-00000005", "step-00000009"])
    XCTAssertEqual(Checkpoint.latestTarget(runDir: dir), dir + "/step-00000005")
    XCTAssertEqual(try Checkpoint.loadForResume("latest", runDir: dir).dir, dir + "/step-00000005")
  }

  func testReplicaChecksumsFindTheFirstDifferingRange() {
    let a: [Float] = [1, 2, 3]
    var b: [Float] = [1, 2, 3]
    let same = a.withUnsafeBufferPointer { ReplicaChecksum.of($0) }
    XCTAssertEqual(same, b.withUnsafeBufferPointer { ReplicaChecksum.of($0) })
    b[2] = Float(bitPattern: b[2].bitPattern ^ 1)  // one ulp
    let other = b.withUnsafeBufferPointer { ReplicaChecksum.of($0) }
    XCTAssertNotEqual(same, other)
    // Order matters: a permutation is a different replica.
    XCTAssertNotEqual(same, [3, 2, 1].withUnsafeBufferPointer { ReplicaChecksum.of($0) })
    XCTAssertEqual(ReplicaChecksum.firstDisagreement(high: [5, max(same, other), 7], low: [5, min(same, other), 8]), 1)
    XCTAssertNil(ReplicaChecksum.firstDisagreement(high: [5, 6], low: [5, 6]))
  }
}
