import Foundation
import Model
import XCTest

@testable import Train

/// Issue 14: Barlow Twins, BYOL and MoCo-v2 as methods — W ranks ≡ 1 on the step-1 gradient
/// under plain SGD, the EMA targets and MoCo's queue as checkpointed method state, exact resume,
/// and export of the online encoder only.
final class MomentumMethodsTests: XCTestCase {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

  func config(_ method: Method, _ edit: (inout PretrainConfig) -> Void = { _ in }) -> PretrainConfig {
    var c = PretrainConfig()
    c.method = method
    c.model = .conv4
    c.seed = 5
    edit(&c)
    return c
  }

  /// x [2B, 1, 28, 28], fixed values.
  func batch(_ b: Int, seed: UInt64 = 9) -> Storage {
    let x = Storage(2 * b * 784)
    var rng = SplitMix64(seed: seed)
    for i in 0..<(2 * b * 784) { x.data[i] = rng.nextUnitFloat() * 2 - 1 }
    return x
  }

  func read(_ path: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: path)).entries
  }

  // MARK: The momentum schedule and the EMA

  /// BYOL's cosine schedule against the fixture's `byol_m` (m0 = 0.996, K = 100, k = 0…100).
  func testCosineMomentumMatchesFixture() throws {
    let f = try SafeTensors.read(Self.fixtures.appendingPathComponent("byol_loss.safetensors")).entries
    let expected = f["byol_m"]!.values
    XCTAssertEqual(expected.count, 101)
    for k in 0...100 {
      XCTAssertEqual(cosineMomentum(base: 0.996, step: k, total: 100), expected[k], accuracy: 1e-7, "k = \(k)")
    }
    XCTAssertEqual(cosineMomentum(base: 0.996, step: 5, total: 0), 0.996, "unknown run length: the base")
  }

  /// After step s the target is m·t + (1 − m)·θ with BYOL's m for k = s − 1; it starts as a copy
  /// of the online encoder and projector, has no predictor, and is not in the trained arena.
  func testBYOLTargetFollowsOnlineByEMA() throws {
    let m = try BYOLMethod(config: config(.byol), collective: LocalCollective())
    m.totalSteps = 10
    let names = Set(m.arena.parameterRanges.map(\.name))
    XCTAssertTrue(names.contains("predictor.0.weight"))
    XCTAssertFalse(names.contains { $0.hasPrefix("target.") })
    let state = Dictionary(uniqueKeysWithValues: m.stateEntries().map { ($0.name, $0) })
    XCTAssertNil(state["target.predictor.0.weight"])
    for r in m.arena.parameterRanges where !r.name.hasPrefix("predictor.") {
      XCTAssertEqual(state["target." + r.name]?.values, m.arena.values(of: r), r.name)
    }
    XCTAssertEqual(state.count, m.arena.parameterRanges.filter { !$0.name.hasPrefix("predictor.") }.count)
    // Move the online parameters, then one update at step 3 (k = 2).
    for i in 0..<m.arena.parameterCount { m.arena.params[i] += 0.25 }
    try m.afterOptimizerStep(step: 3)
    let mk = cosineMomentum(base: 0.996, step: 2, total: 10)
    XCTAssertEqual(m.lastMomentum, mk)
    XCTAssertGreaterThan(mk, 0.996)
    let after = Dictionary(uniqueKeysWithValues: m.stateEntries().map { ($0.name, $0) })
    for r in m.arena.parameterRanges where !r.name.hasPrefix("predictor.") {
      let t0 = state["target." + r.name]!.values
      let theta = m.arena.values(of: r)
      let want = zip(t0, theta).map { mk * $0 + (1 - mk) * $1 }
      XCTAssertEqual(after["target." + r.name]!.values, want, r.name)
    }
  }

  /// MoCo's key network starts as the query network, the queue holds unit rows, a forward
  /// enqueues the batch's normalised keys at the pointer, and the constant momentum applies.
  func testMoCoQueueAndKeyNetwork() throws {
    let c = config(.moco) { $0.queueSize = 16 }
    let m = try MoCoMethod(config: c, collective: LocalCollective())
    let heads: Set<String> = Set(m.arena.parameterRanges.map(\.name).filter { !$0.hasPrefix("encoder.") })
    XCTAssertEqual(heads, ["head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"])
    var state = Dictionary(uniqueKeysWithValues: m.stateEntries().map { ($0.name, $0) })
    let q0 = state["queue"]!.values
    XCTAssertEqual(state["queue"]!.shape, [16, 128])
    XCTAssertEqual(state["queue_ptr"]!.values, [0])
    for i in 0..<16 {
      let row: ArraySlice<Float> = q0[(i * 128)..<((i + 1) * 128)]
      let norm2: Double = row.reduce(0.0) { $0 + Double($1) * Double($1) }
      XCTAssertEqual(norm2, 1, accuracy: 1e-5)
    }
    let b = 6
    let x = batch(b)
    _ = try m.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: nil), lossScale: 1)
    state = Dictionary(uniqueKeysWithValues: m.stateEntries().map { ($0.name, $0) })
    let q1 = state["queue"]!.values
    XCTAssertEqual(state["queue_ptr"]!.values, [Float(b)])
    let written = b * 128
    let rest0: [Float] = Array(q0[written...]), rest1: [Float] = Array(q1[written...])
    let head0: [Float] = Array(q0[..<written]), head1: [Float] = Array(q1[..<written])
    XCTAssertEqual(rest1, rest0, "rows past the pointer are untouched")
    XCTAssertNotEqual(head1, head0)
    // Two more batches wrap around: pointer (6 + 6 + 6) mod 16 = 2.
    _ = try m.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: nil), lossScale: 1)
    _ = try m.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: nil), lossScale: 1)
    XCTAssertEqual(m.queuePointer, 2)
    try m.afterOptimizerStep(step: 1)
    XCTAssertEqual(m.lastMomentum, 0.99)
    // A damaged pointer is refused with the file's name.
    var entries = Dictionary(uniqueKeysWithValues: m.stateEntries().map { ($0.name, $0) })
    entries["queue_ptr"]!.values = [16]
    XCTAssertThrowsError(try m.restoreState(entries, path: "/ck/method.safetensors")) {
      XCTAssertTrue("\($0)".contains("/ck/method.safetensors") && "\($0)".contains("queue_ptr"), "\($0)")
    }
    entries["queue_ptr"]!.values = [3]
    entries["queue"] = SafeTensors.Entry(name: "queue", shape: [8, 128], values: Array(q0[0..<8 * 128]))
    XCTAssertThrowsError(try m.restoreState(entries, path: "/ck/method.safetensors")) {
      XCTAssertTrue("\($0)".contains("queue"), "\($0)")
    }
    XCTAssertEqual(m.queuePointer, 2, "a refused restore left the pointer as it was")
  }

  /// `--moco-cosine`: the key momentum follows BYOL's schedule from moco-momentum to 1.
  func testMoCoCosineMomentum() throws {
    let m = try MoCoMethod(config: config(.moco) { $0.queueSize = 16; $0.mocoCosine = true }, collective: LocalCollective())
    m.totalSteps = 10
    try m.afterOptimizerStep(step: 1)
    XCTAssertEqual(m.lastMomentum, 0.99)
    try m.afterOptimizerStep(step: 6)
    XCTAssertEqual(m.lastMomentum, cosineMomentum(base: 0.99, step: 5, total: 10))
    XCTAssertEqual(m.lastMomentum, 0.995, accuracy: 1e-6)
  }

  func testMoCoQueueSmallerThanGlobalBatchIsRefused() {
    let c = config(.moco) { $0.queueSize = 64; $0.globalBatch = 128 }
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--queue-size 64"), "\($0)") }
  }

  // MARK: W ranks ≡ 1 under plain SGD

  /// One SGD step at `np` ranks; (summed gradient of step 1, parameters after it, method state).
  func sgdStep(np: Int, name: String, _ args: [String]) throws
    -> (grads: [String: SafeTensors.Entry], params: [String: SafeTensors.Entry], state: [String: SafeTensors.Entry])
  {
    let dir = Processes.temporaryDirectory(name)
    let dump = dir + "/grads.safetensors"
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--model", "conv4", "--global-batch", "12", "--max-steps", "1", "--warmup-steps", "0",
        "--seed", "11", "--threads", "1", "--run-dir", dir, "--optimizer", "sgd", "--base-lr", "2",
        "--lr-scaling", "none", "--momentum", "0", "--weight-decay", "0", "--debug-dump-gradients", dump,
      ] + args, timeout: 120)
    XCTAssertEqual(r.status, 0, "np \(np) \(args) failed:\n\(r.stdout)\n\(r.stderr)")
    return (try read(dump), try read(dir + "/latest/model.safetensors"), try read(dir + "/latest/method.safetensors"))
  }

  /// Every tensor within `rel` of its own largest value, or within 1e-5 of the largest value of
  /// all tensors (rounding noise of a tensor whose true value is ≈ 0, e.g. a bias feeding BN).
  func assertSame(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], rel: Float, _ what: String, line: UInt = #line
  ) {
    XCTAssertEqual(Set(a.keys), Set(b.keys), what, line: line)
    let global = a.values.flatMap(\.values).map(abs).max() ?? 0
    XCTAssertGreaterThan(global, 0, what, line: line)
    for (name, x) in a {
      guard let y = b[name] else { continue }
      let own = x.values.map(abs).max() ?? 0
      let diff = zip(x.values, y.values).map { abs($0 - $1) }.max() ?? 0
      XCTAssertLessThanOrEqual(diff, max(rel * own, 1e-5 * global), "\(what) \(name): max difference \(diff), own max \(own)", line: line)
    }
  }

  /// Step-1 gradient and SGD update per tensor at 2 and 3 ranks equal one rank's; the SGD step
  /// moved every weight (so the parameter comparison sees the gradient); the method state after
  /// the step (EMA target, queue) agrees too.
  func assertRankInvariant(_ args: [String], _ what: String) throws {
    let one = try sgdStep(np: 1, name: "\(what)-1", args)
    for np in [2, 3] {
      let w = try sgdStep(np: np, name: "\(what)-\(np)", args)
      assertSame(one.grads, w.grads, rel: 2e-4, "\(what) gradient, \(np) ranks")
      assertSame(one.params, w.params, rel: 1e-4, "\(what) parameters after SGD, \(np) ranks")
      assertSame(one.state, w.state, rel: 1e-4, "\(what) method state after SGD, \(np) ranks")
    }
    let initial = try sgdStep(np: 1, name: "\(what)-0", args + ["--base-lr", "1e-30"])
    for (name, e) in one.params where name.hasSuffix(".weight") && e.shape.count > 1 {
      let moved = zip(e.values, initial.params[name]!.values).map { abs($0 - $1) }.max() ?? 0
      XCTAssertGreaterThan(moved, 1e-5, "\(what) \(name) did not move")
    }
  }

  func testBarlowSGDStepOfTwoAndThreeRanksIsOneRanks() throws {
    // Barlow has no method state: compare gradients and parameters only.
    let one = try barlowStep(np: 1, "--base-lr", "2")
    for np in [2, 3] {
      let w = try barlowStep(np: np, "--base-lr", "2")
      assertSame(one.0, w.0, rel: 2e-4, "barlow gradient, \(np) ranks")
      assertSame(one.1, w.1, rel: 1e-4, "barlow parameters after SGD, \(np) ranks")
    }
    let initial = try barlowStep(np: 1, "--base-lr", "1e-30")
    for (name, e) in one.1 where name.hasSuffix(".weight") && e.shape.count > 1 {
      let moved = zip(e.values, initial.1[name]!.values).map { abs($0 - $1) }.max() ?? 0
      XCTAssertGreaterThan(moved, 1e-5, "barlow \(name) did not move")
    }
  }

  private func barlowStep(np: Int, _ extra: String...) throws -> ([String: SafeTensors.Entry], [String: SafeTensors.Entry]) {
    let dir = Processes.temporaryDirectory("barlow-\(np)-\(extra.joined())")
    let dump = dir + "/grads.safetensors"
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--method", "barlow", "--barlow-dim", "64", "--model", "conv4", "--global-batch", "12",
        "--max-steps", "1", "--warmup-steps", "0", "--seed", "11", "--threads", "1", "--run-dir", dir,
        "--optimizer", "sgd", "--lr-scaling", "none", "--momentum", "0", "--weight-decay", "0",
        "--debug-dump-gradients", dump,
      ] + extra, timeout: 120)
    XCTAssertEqual(r.status, 0, "np \(np) failed:\n\(r.stdout)\n\(r.stderr)")
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/latest/method.safetensors"))
    return (try read(dump), try read(dir + "/latest/model.safetensors"))
  }

  func testBYOLSGDStepOfTwoAndThreeRanksIsOneRanks() throws {
    try assertRankInvariant(["--method", "byol", "--byol-hidden", "64", "--projection-dim", "32"], "byol")
  }

  func testMoCoSGDStepOfTwoAndThreeRanksIsOneRanks() throws {
    // The queue after the step holds the 12 keys in global-batch order (rows 0..<12).
    try assertRankInvariant(["--method", "moco", "--queue-size", "48", "--projection-dim", "32"], "moco")
  }

  // MARK: Checkpoints

  func pretrain(np: Int, dir: String, _ extra: [String]) throws {
    let r = try Processes.parallax(
      np: np,
      [
        "pretrain", "--global-batch", "8", "--max-steps", "4", "--checkpoint-every", "2", "--warmup-steps", "1",
        "--seed", "5", "--threads", "1", "--run-dir", dir,
      ] + extra, timeout: 120)
    XCTAssertEqual(r.status, 0, "np \(np) \(extra) failed:\n\(r.stdout)\n\(r.stderr)")
  }

  func bytes(_ path: String) throws -> Foundation.Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

  /// 2 steps + resume + 2 steps equals 4 steps bit for bit: parameters, optimizer buffers and
  /// the method state (EMA target; MoCo's queue and pointer). Two ranks, so the pre-checkpoint
  /// replica check also compares the method state of both ranks at every checkpoint. The
  /// export holds the online encoder, and the target differs from it (the EMA is not a copy).
  func assertResumeIsExact(_ method: [String], _ what: String) throws {
    let whole = Processes.temporaryDirectory("\(what)-whole")
    let parts = Processes.temporaryDirectory("\(what)-parts")
    try pretrain(np: 2, dir: whole, method)
    try pretrain(np: 2, dir: parts, method + ["--stop-after", "2"])
    XCTAssertFalse(FileManager.default.fileExists(atPath: parts + "/step-00000004"))
    try pretrain(np: 2, dir: parts, method + ["--resume", "latest"])
    for file in ["model.safetensors", "optimizer.safetensors", "method.safetensors"] {
      XCTAssertEqual(
        try bytes(whole + "/step-00000004/" + file), try bytes(parts + "/step-00000004/" + file), "\(what): \(file) differs after resume")
    }
    // Steps 3–4 changed the method state (so the comparison can fail).
    let mid = try read(whole + "/step-00000002/method.safetensors")
    let end = try read(whole + "/step-00000004/method.safetensors")
    XCTAssertEqual(Set(mid.keys), Set(end.keys))
    XCTAssertTrue(end.contains { mid[$0.key]!.values != $0.value.values }, "\(what): method state did not change")

    let model = try read(whole + "/step-00000004/model.safetensors")
    XCTAssertFalse(model.keys.contains { $0.hasPrefix("target.") }, "\(what): the target leaked into the model")
    let out = whole + "/encoder.safetensors"
    let r = try Processes.run(Processes.parallax, ["export", "--checkpoint", whole + "/latest", "--out", out])
    XCTAssertEqual(r.status, 0, r.stderr)
    let exported = try read(out)
    XCTAssertEqual(Set(exported.keys), Set(model.keys.filter { $0.hasPrefix("encoder.") }.map { String($0.dropFirst(8)) }))
    var differsFromTarget = false
    for (name, e) in exported {
      XCTAssertEqual(e.values, model["encoder." + name]!.values, "\(what): export \(name) is not the online encoder's")
      if let t = end["target.encoder." + name], t.values != e.values { differsFromTarget = true }
    }
    XCTAssertTrue(differsFromTarget, "\(what): the target equals the online encoder")
  }

  func testBYOLResumeIsBitIdentical() throws {
    try assertResumeIsExact(["--method", "byol", "--byol-hidden", "64", "--projection-dim", "32"], "byol")
  }

  func testMoCoResumeIsBitIdentical() throws {
    try assertResumeIsExact(["--method", "moco", "--queue-size", "24", "--projection-dim", "32"], "moco")
  }

  func testMoCoShuffledKeyBNResumeIsBitIdentical() throws {
    try assertResumeIsExact(["--method", "moco", "--queue-size", "24", "--projection-dim", "32", "--key-bn", "shuffle"], "moco-shuffle")
  }

  // MARK: Shuffling BN

  /// The key permutation is a permutation of the global batch, a function of (seed, step,
  /// micro-batch) alone — no rank enters it, so every rank computes the same — and it changes
  /// from step to step.
  func testKeyPermutationIsKeyedByTheStep() {
    let p = MoCoMethod.keyPermutation(count: 12, seed: 11, step: 3, micro: 0)
    XCTAssertEqual(p.sorted(), Array(0..<12))
    XCTAssertEqual(MoCoMethod.keyPermutation(count: 12, seed: 11, step: 3, micro: 0), p)
    XCTAssertNotEqual(MoCoMethod.keyPermutation(count: 12, seed: 11, step: 4, micro: 0), p)
    XCTAssertNotEqual(MoCoMethod.keyPermutation(count: 12, seed: 11, step: 3, micro: 1), p)
    XCTAssertNotEqual(MoCoMethod.keyPermutation(count: 12, seed: 12, step: 3, micro: 0), p)
    XCTAssertNotEqual(p, Array(0..<12))
  }

  /// At one rank shuffling BN normalises the whole (permuted) batch: the step equals sync BN's
  /// up to rounding (gradients, parameters and the queue of keys put back in order). At two
  /// ranks it normalises per rank, so the keys differ measurably from sync BN's — and the
  /// queues of both ranks are still bitwise the same (the replica check before every
  /// checkpoint compares them), which needs the same permutation on both.
  func testShuffledKeyBNAtOneRankIsSyncBNAndAgreesAcrossRanks() throws {
    let base = ["--method", "moco", "--queue-size", "48", "--projection-dim", "32"]
    let sync = try sgdStep(np: 1, name: "kbn-sync-1", base)
    let shuffled = try sgdStep(np: 1, name: "kbn-shuffle-1", base + ["--key-bn", "shuffle"])
    assertSame(sync.grads, shuffled.grads, rel: 2e-4, "shuffle vs sync gradient, 1 rank")
    assertSame(sync.params, shuffled.params, rel: 1e-4, "shuffle vs sync parameters, 1 rank")
    var state = shuffled.state
    XCTAssertEqual(state.removeValue(forKey: "key_step")?.values, [1])
    assertSame(sync.state, state, rel: 1e-4, "shuffle vs sync method state, 1 rank")

    let two = Processes.temporaryDirectory("kbn-shuffle-2")
    try pretrain(np: 2, dir: two, base + ["--key-bn", "shuffle", "--checkpoint-every", "1", "--keep", "10", "--max-steps", "3"])
    XCTAssertTrue(Jobs.rankLog(two, rank: 1, contains: "checkpoint of step 3 written by rank 0"))
    let twoSync = Processes.temporaryDirectory("kbn-sync-2")
    try pretrain(np: 2, dir: twoSync, base + ["--checkpoint-every", "1", "--keep", "10", "--max-steps", "3"])
    let a = try read(two + "/step-00000001/method.safetensors")["queue"]!.values
    let b = try read(twoSync + "/step-00000001/method.safetensors")["queue"]!.values
    // Every sample of the global batch got its key (a rank-dependent permutation would leave
    // some unencoded: zero rows), each a unit row.
    for i in 0..<8 {
      let row: [Float] = Array(a[(i * 32)..<((i + 1) * 32)])
      let norm2: Double = row.reduce(0.0) { $0 + Double($1) * Double($1) }
      XCTAssertEqual(norm2, 1, accuracy: 1e-4, "key of sample \(i) after step 1")
    }
    let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertGreaterThan(diff, 1e-3, "per-rank key BN changed the keys")
  }

  /// MoCo's queue after 4 steps of 8 keys (a queue of 24: it wrapped) is bitwise the same on
  /// both ranks — the replica check before each checkpoint compares it — and close to one
  /// rank's; the pointer is 32 mod 24 = 8.
  func testMoCoQueuesAgreeAcrossRanks() throws {
    let two = Processes.temporaryDirectory("moco-queue-2")
    let one = Processes.temporaryDirectory("moco-queue-1")
    let args = ["--method", "moco", "--queue-size", "24", "--projection-dim", "32", "--checkpoint-every", "1", "--keep", "10"]
    try pretrain(np: 2, dir: two, args)
    try pretrain(np: 1, dir: one, args)
    XCTAssertTrue(Jobs.rankLog(two, rank: 1, contains: "checkpoint of step 4 written by rank 0"))
    let s2 = try read(two + "/step-00000004/method.safetensors")
    XCTAssertEqual(s2["queue_ptr"]!.values, [8])
    // After one step the queue's first 8 rows are the step's keys in global-batch order.
    let a = try read(one + "/step-00000001/method.safetensors")["queue"]!.values
    let b = try read(two + "/step-00000001/method.safetensors")["queue"]!.values
    let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 1
    XCTAssertLessThanOrEqual(diff, 1e-4, "queue after step 1, 1 vs 2 ranks")
  }
}
