import Dist
import Foundation
import Model

/// A checkpoint chosen for `--resume`: rank 0 loads and verifies it; every rank knows its
/// directory and state, only rank 0 holds its tensors (the others receive them by broadcast).
public struct ResumeSource {
  public var dir: String
  public var state: CheckpointState
  /// What the user should know: refused checkpoints, fallbacks, changed settings.
  public var notes: [String]
  var model: [String: SafeTensors.Entry] = [:]
  var optimizer: [String: SafeTensors.Entry] = [:]
  var method: [String: SafeTensors.Entry] = [:]

  /// Rank 0 finds, verifies and checks the checkpoint against `config`; every rank returns
  /// the same result or throws the same error (so no rank is left waiting).
  public static func find(_ spec: String, config: PretrainConfig, comm: Communicator) throws -> ResumeSource {
    struct Verdict: Codable {
      var error: String?
      var dir = ""
      var state: CheckpointState?
      var notes: [String] = []
    }
    var source: ResumeSource?
    var verdict = Verdict()
    if comm.rank == 0 {
      do {
        let (dir, loaded, notes) = try Checkpoint.loadForResume(spec, runDir: config.runDir)
        let remarks = try compatibility(of: loaded.state, with: config, dir: dir, worldSize: comm.size)
        source = ResumeSource(
          dir: dir, state: loaded.state, notes: notes + remarks, model: loaded.model, optimizer: loaded.optimizer,
          method: loaded.method)
        verdict = Verdict(dir: dir, state: loaded.state, notes: notes + remarks)
      } catch {
        verdict.error = "\(error)"
      }
    }
    if comm.size > 1 {
      let json = comm.rank == 0 ? String(decoding: try JSONEncoder().encode(verdict), as: UTF8.self) : ""
      verdict = try JSONDecoder().decode(Verdict.self, from: Foundation.Data(try comm.broadcast(string: json, from: 0).utf8))
    }
    if let e = verdict.error { throw TrainError("cannot resume: \(e)") }
    return source ?? ResumeSource(dir: verdict.dir, state: verdict.state!, notes: verdict.notes)
  }

  /// Throws unless the checkpoint can continue this run (every option whose `resume` policy
  /// is `mustMatch` equal); returns remarks on what changed.
  static func compatibility(
    of state: CheckpointState, with config: PretrainConfig, dir: String, worldSize: Int
  ) throws -> [String] {
    var conflicts: [String] = []
    var changes: [String] = []
    for option in PretrainConfig.allOptions where option.resume != .silent {
      let a = state.config.value(option).optionText
      let b = config.value(option).optionText
      guard a != b else { continue }
      if option.resume == .mustMatch { conflicts.append("\(option.key) \(a) (checkpoint) vs \(b) (this run)") } else {
        changes.append("\(option.key) \(a) → \(b)")
      }
    }
    guard conflicts.isEmpty else {
      throw CheckpointError(
        path: dir, reason: "incompatible with this run: " + conflicts.joined(separator: ", ")
          + "; nothing was written (use another --run-dir for a different configuration)")
    }
    var remarks: [String] = []
    if !changes.isEmpty { remarks.append("settings changed since the checkpoint: " + changes.joined(separator: ", ")) }
    if state.worldSize != worldSize {
      remarks.append(
        "checkpoint written by \(state.worldSize) rank(s), resuming on \(worldSize) (same global batch \(config.globalBatch))")
    }
    return remarks
  }
}

extension Pretrainer {
  /// Restores parameters, BN statistics, optimizer buffers and the position in the data
  /// (step, epoch, batch in epoch). Rank 0 holds the tensors and broadcasts them.
  public func resume(_ source: ResumeSource) throws {
    let s = source.state
    guard s.epoch >= 0, s.batchInEpoch >= 0, s.batchInEpoch <= data.batchesPerEpoch, s.step >= 0 else {
      throw TrainError("cannot resume: \(source.dir)/state.json has an impossible position (step \(s.step), batch \(s.batchInEpoch) of \(data.batchesPerEpoch))")
    }
    if let lw = layerwise {
      let expected = lw.position(ofStep: s.step)
      guard s.stage == expected.stage, s.stageStep == expected.stepInStage else {
        throw TrainError(
          "cannot resume: \(source.dir)/state.json records layer-wise stage \(s.stage.map(String.init) ?? "none") step \(s.stageStep.map(String.init) ?? "none"), but step \(s.step) is stage \(expected.stage) step \(expected.stepInStage) of this run")
      }
    }
    var failure = ""
    if comm.rank == 0 {
      do {
        try Checkpoint.restore(method.arena, from: source.model, path: source.dir + "/model.safetensors")
        try restoreOptimizer(source.optimizer, path: source.dir + "/optimizer.safetensors")
        try method.restoreState(source.method, path: source.dir + "/" + Checkpoint.methodFile)
      } catch { failure = "\(error)" }
    }
    if comm.size > 1 { failure = try comm.broadcast(string: failure, from: 0) }
    guard failure.isEmpty else { throw TrainError("cannot resume: \(failure)") }
    try comm.broadcast(method.arena.params, count: method.arena.parameterCount, from: 0)
    try comm.broadcast(method.arena.buffers, count: method.arena.bufferCount, from: 0)
    for name in optimizer.stateNames {
      try comm.broadcast(optimizer.stateBuffer(named: name)!, count: method.arena.parameterCount, from: 0)
    }
    if comm.size > 1 {
      // Rank 0 restored the method's state; the others take its values.
      var entries: [String: SafeTensors.Entry] = [:]
      for var e in method.stateEntries() {
        try e.values.withUnsafeMutableBufferPointer { try comm.broadcast($0.baseAddress!, count: $0.count, from: 0) }
        entries[e.name] = e
      }
      if !entries.isEmpty { try method.restoreState(entries, path: source.dir + "/" + Checkpoint.methodFile) }
    }
    position = TrainingPosition(step: s.step, epoch: s.epoch, batchInEpoch: s.batchInEpoch)
    resumedFrom = source.dir
  }

  /// Optimizer buffers sliced like the parameters: `momentum.encoder.0.weight`, …
  func optimizerEntries() -> [SafeTensors.Entry] {
    optimizer.stateNames.flatMap { state in
      let buffer = optimizer.stateBuffer(named: state)!
      return method.arena.parameterRanges.map { r in
        SafeTensors.Entry(
          name: "\(state).\(r.name)", shape: r.shape,
          values: Array(UnsafeBufferPointer(start: buffer + r.offset, count: r.count)))
      }
    }
  }

  func restoreOptimizer(_ entries: [String: SafeTensors.Entry], path: String) throws {
    for state in optimizer.stateNames {
      let buffer = optimizer.stateBuffer(named: state)!
      for r in method.arena.parameterRanges {
        guard let e = entries["\(state).\(r.name)"], e.values.count == r.count else {
          throw CheckpointError(path: path, reason: "has no \(state) for '\(r.name)'")
        }
        e.values.withUnsafeBufferPointer { (buffer + r.offset).update(from: $0.baseAddress!, count: r.count) }
      }
    }
  }

  /// The ranges every rank must hold bit for bit before a checkpoint: parameters, optimizer
  /// buffers, BN statistics (when synchronised; otherwise each rank has its own and rank 0's
  /// are saved). The method's state and the position are checked beside them.
  func replicatedRanges() -> [(name: String, values: UnsafeBufferPointer<Float>)] {
    let arena = method.arena
    var out = arena.parameterRanges.map { r in
      (r.name, UnsafeBufferPointer(start: arena.params + r.offset, count: r.count))
    }
    for state in optimizer.stateNames {
      let buffer = optimizer.stateBuffer(named: state)!
      out += arena.parameterRanges.map { r in
        ("\(state).\(r.name)", UnsafeBufferPointer(start: buffer + r.offset, count: r.count))
      }
    }
    if config.syncBN {
      out += arena.bufferRanges.map { r in
        (r.name, UnsafeBufferPointer(start: arena.buffers + r.offset, count: r.count))
      }
    }
    return out
  }

  /// Checks with one MAX and one MIN all-reduce of per-range checksums that every rank
  /// holds the same replicated state; throws (on every rank) naming the first range that
  /// differs.
  func verifyReplicasAgree() throws {
    guard comm.size > 1 else { return }
    let state = method.stateEntries()
    var names = replicatedRanges().map { "'\($0.name)'" } + state.map { "method state '\($0.name)'" }
    names.append("the position in the data (step, epoch, batch)")
    let p = position
    let sums =
      replicatedRanges().map { ReplicaChecksum.of($0.values) }
      + state.map { e in e.values.withUnsafeBufferPointer { ReplicaChecksum.of($0) } }
      + [ReplicaChecksum.of(position: [p.step, p.epoch, p.batchInEpoch])]
    let disagreement = try ReplicaChecksum.firstDisagreement(sums, comm: comm)
    if let i = disagreement {
      throw TrainError(
        "ranks disagree on \(names[i]) before the checkpoint of step \(step); nothing written")
    }
  }

  /// Writes a checkpoint of the current step: the ranks check that they agree, rank 0
  /// writes, and every rank learns whether it worked (all throw the same error if not).
  /// Returns the directory written.
  func writeCheckpoint() throws -> String? {
    try verifyReplicasAgree()
    var written: String?
    var failure = ""
    if comm.rank == 0 {
      var state = CheckpointState(
        config: config, step: step, epoch: position.epoch, batchInEpoch: position.batchInEpoch, worldSize: comm.size,
        seed: config.seed)
      if let lw = layerwise { (state.stage, state.stageStep) = lw.position(ofStep: step) }
      do {
        written = try Checkpoint.write(
          runDir: config.runDir, arena: method.arena, optimizerState: optimizerEntries(),
          methodState: method.stateEntries(), state: state, keep: config.keep,
          modelMetadata: ModelCard.metadata(
            config: config, step: step, dims: (method.encoder.featureDim, method.encoder.prePoolDim), prefix: "encoder.",
            includeConfig: false))
      } catch { failure = "\(error)" }
    }
    if comm.size > 1 { failure = try comm.broadcast(string: failure, from: 0) }
    guard failure.isEmpty else {
      RankLog.note("error: \(failure)")
      throw TrainError(comm.rank == 0 ? failure : "rank 0 could not write the checkpoint of step \(step): \(failure)")
    }
    let dir = written ?? (config.runDir as NSString).appendingPathComponent(Checkpoint.directoryName(step: step))
    RankLog.note("checkpoint of step \(step) written by rank 0: \(dir)")
    return dir
  }
}

/// Order-sensitive checksums of float ranges (FNV-1a over the bit patterns), compared across
/// ranks with one MAX and one MIN all-reduce: equal extremes mean every rank has the same
/// bits. The drift check (`--check-every`) and the pre-checkpoint replica check both use it.
enum ReplicaChecksum {
  static func of(_ values: UnsafeBufferPointer<Float>) -> Int64 {
    fnv1a(values.lazy.map { UInt64($0.bitPattern) })
  }

  static func of(position: [Int]) -> Int64 {
    fnv1a(position.lazy.map { UInt64(bitPattern: Int64($0)) })
  }

  /// FNV-1a over 64-bit words.
  private static func fnv1a(_ words: some Sequence<UInt64>) -> Int64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for w in words { h = (h ^ w) &* 0x0000_0100_0000_01b3 }
    return Int64(bitPattern: h)
  }

  /// The index of the first checksum that differs between ranks, or nil (collective).
  static func firstDisagreement(_ sums: [Int64], comm: Communicator) throws -> Int? {
    var high = sums
    var low = sums
    try comm.allReduce(&high, count: high.count, op: .max)
    try comm.allReduce(&low, count: low.count, op: .min)
    return firstDisagreement(high: high, low: low)
  }

  /// The first index whose extremes differ.
  static func firstDisagreement(high: [Int64], low: [Int64]) -> Int? {
    high.indices.first { high[$0] != low[$0] }
  }
}
