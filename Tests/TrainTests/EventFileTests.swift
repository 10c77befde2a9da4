import Foundation
import XCTest

@testable import Train

/// Tiny pretraining runs shared by the event-file and report tests (made once per test
/// process): MT-SLVR (two named task losses) on 2 ranks (so the all-reduce and its hidden
/// share are logged), with a timeline.
enum TinyRuns {
  nonisolated(unsafe) static var cache: [String: String] = [:]

  /// `mpirun -np 2 parallax pretrain --method mtslvr`, global batch 16, 3 steps.
  static func twoRankMTSLVR() throws -> String {
    if let dir = cache["mtslvr"] { return dir }
    let dir = Processes.temporaryDirectory("tiny-mtslvr")
    let r = try Processes.parallax(
      np: 2,
      [
        "pretrain", "--method", "mtslvr", "--global-batch", "16", "--max-steps", "3", "--warmup-steps", "1",
        "--threads", "1", "--run-dir", dir, "--timeline", dir + "/timeline.json",
      ], timeout: 180)
    XCTAssertEqual(r.status, 0, r.stderr)
    guard r.status == 0 else { throw XCTSkip("the tiny run failed (asserted above)") }
    cache["mtslvr"] = dir
    return dir
  }

  /// One rank of SimCLR, global batch 16, 2 steps (a second run to compare with).
  static func oneRankSimCLR() throws -> String {
    if let dir = cache["simclr"] { return dir }
    let dir = Processes.temporaryDirectory("tiny-simclr")
    let r = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "16", "--max-steps", "2", "--warmup-steps", "1", "--threads", "1", "--run-dir", dir],
      timeout: 120)
    XCTAssertEqual(r.status, 0, r.stderr)
    guard r.status == 0 else { throw XCTSkip("the tiny run failed (asserted above)") }
    cache["simclr"] = dir
    return dir
  }

  static func eventFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }
      .sorted().map { dir + "/" + $0 }
  }
}

/// CRC-32C and TFRecord framing, and the TensorBoard event file of a run read back by the
/// `tensorboard` package's own reader.
final class EventFileTests: XCTestCase {
  /// Known CRC-32C values: the check value of "123456789", and RFC 3720 (iSCSI) B.4's
  /// 32-byte vectors.
  func testCRC32CKnownVectors() {
    XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
    XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
    XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    // Masking: rotate right 15, add 0xa282ead8.
    XCTAssertEqual(CRC32C.masked(0), 0xA282_EAD8)
    XCTAssertEqual(CRC32C.masked(0xE306_9283), 0xC78A_B0E5)
  }

  /// The all-reduce time of a step is the union of its buckets' intervals (overlaps once).
  func testIntervalUnion() {
    XCTAssertEqual(intervalUnion([(start: 0, end: 2), (start: 1, end: 3), (start: 5, end: 6)]), 4)
    XCTAssertEqual(intervalUnion([(start: 4, end: 5), (start: 0, end: 10)]), 10)
    XCTAssertEqual(intervalUnion([]), 0)
  }

  /// One record: 8-byte length, masked CRC of it, the payload, masked CRC of the payload.
  func testRecordFraming() {
    let payload: [UInt8] = Array("123456789".utf8)
    let r = EventFile.record(payload)
    XCTAssertEqual(r.count, 8 + 4 + 9 + 4)
    XCTAssertEqual(Array(r[0..<8]), [9, 0, 0, 0, 0, 0, 0, 0])
    let lengthCRC = r[8..<12].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    XCTAssertEqual(lengthCRC, CRC32C.masked(CRC32C.checksum(r[0..<8])))
    XCTAssertEqual(Array(r[12..<21]), payload)
    let dataCRC = r[21..<25].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    XCTAssertEqual(dataCRC, CRC32C.masked(0xE306_9283))
  }

  /// Reads the run's event file with tensorboard's `EventAccumulator` (and the raw loader
  /// for the first record) and compares every tag, step and value with log.jsonl and
  /// probes.json. Exits non-zero on any difference.
  static let script = #"""
    import glob, json, math, os, sys
    from tensorboard.backend.event_processing import event_accumulator, event_file_loader

    run = sys.argv[1]
    errors = []
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if len(files) != 1:
        sys.exit(f"FAIL: expected one event file, found {files}")
    Loader = getattr(event_file_loader, "LegacyEventFileLoader", event_file_loader.EventFileLoader)
    events = list(Loader(files[0]).Load())
    if not events or events[0].file_version != "brain.Event:2":
        errors.append(f"first event is not file_version brain.Event:2: {events[:1]}")

    ea = event_accumulator.EventAccumulator(run, size_guidance={event_accumulator.SCALARS: 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])

    # log.jsonl key -> (tag, tolerance of its printed rounding)
    keys = {"loss": ("loss", 1e-6), "lr": ("lr", 0), "samples_per_s": ("throughput/samples_per_s", 0.05),
            "compute_ms": ("time/compute_ms", 0.005), "comm_ms": ("time/comm_ms", 0.005),
            "allreduce_ms": ("time/allreduce_ms", 0.005), "hidden": ("comm/hidden_share", 5e-5)}
    log = [json.loads(l) for l in open(os.path.join(run, "log.jsonl")) if l.strip()]
    expected = {}  # tag -> [(step, value, tolerance)]
    for line in log:
        for k, v in line.items():
            if k in keys:
                tag, tol = keys[k]
                expected.setdefault(tag, []).append((line["step"], v, tol))
            elif k == "losses":
                for task, x in v.items():
                    expected.setdefault("loss/" + task, []).append((line["step"], x, 1e-6))
            elif k not in ("step", "epoch"):
                errors.append(f"log.jsonl key {k} has no TensorBoard tag in this test")
    probes = json.load(open(os.path.join(run, "probes.json")))
    for p in probes["probes"]:
        tag = "probe/" + "_".join("".join(c if c.isalnum() or c in "-." else " " for c in p["name"].lower()).split())
        expected.setdefault(tag, []).append((probes["step"], p["accuracy"], 1e-7))

    if tags != set(expected):
        errors.append(f"tags {sorted(tags)} != expected {sorted(expected)}")
    for tag, rows in expected.items():
        if tag not in tags:
            continue
        got = ea.Scalars(tag)
        if [e.step for e in got] != [s for s, _, _ in rows]:
            errors.append(f"{tag}: steps {[e.step for e in got]} != {[s for s, _, _ in rows]}")
            continue
        for e, (step, v, tol) in zip(got, rows):
            limit = tol * 1.01 + 1e-6 * abs(v)  # log.jsonl's printed rounding + Float32 in the events
            if not math.isfinite(e.value) or abs(e.value - v) > limit:
                errors.append(f"{tag} step {step}: events {e.value!r} vs log {v!r} (tolerance {limit})")
        if any(e.wall_time < 1.6e9 for e in got):
            errors.append(f"{tag}: wall_time is not a Unix time")
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"OK {len(tags)} tags, {len(log)} steps, first event {events[0].file_version}")
    """#

  func testTensorBoardReadsTheRunsEvents() throws {
    let python = try TestTools.tensorboardPython()
    let dir = try TinyRuns.twoRankMTSLVR()
    let files = TinyRuns.eventFiles(dir)
    XCTAssertEqual(files.count, 1, "\(files)")
    guard let events = files.first else { return }
    // The probes of --probe are appended after the run (the same call `pretrain` makes; a
    // real probe run takes minutes).
    try RunRecord.recordProbes(
      [("mtslvr conv4 (pooled)", 0.8125), ("raw pixels", 0.8397)], runDir: dir, eventFile: events, step: 3)
    let script = dir + "/check_events.py"
    try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
    let p = try Processes.run(python, [script, dir], timeout: 120)
    XCTAssertEqual(p.status, 0, "tensorboard check failed:\n\(p.stdout)\n\(p.stderr)")
    XCTAssertTrue(p.stdout.contains("OK 11 tags, 3 steps, first event brain.Event:2"), p.stdout + p.stderr)
  }
}
