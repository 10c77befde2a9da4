import Foundation
import Model

extension Pretrainer {
  /// Restores parameters, BN statistics, optimizer buffers and the position in the data.
  public func resume(from dir: String) throws {
    let ck = try Checkpoint.load(dir)
    let s = ck.state
    guard s.config.model == config.model, s.config.method == config.method else {
      throw CheckpointError(
        path: dir, reason: "was written by \(s.config.method)/\(s.config.model), this run is \(config.method)/\(config.model)")
    }
    guard s.config.globalBatch == config.globalBatch, s.config.seed == config.seed else {
      throw CheckpointError(path: dir, reason: "global batch or seed differs from this run's")
    }
    try Checkpoint.restore(net.arena, from: ck.model, path: dir + "/model.safetensors")
    try restoreOptimizer(ck.optimizer, path: dir + "/optimizer.safetensors")
    step = s.step
    epoch = s.epoch
    batchInEpoch = s.batchInEpoch
  }

  func optimizerEntries() -> [SafeTensors.Entry] {
    net.arena.parameterRanges.map { r in
      SafeTensors.Entry(
        name: "momentum.\(r.name)", shape: r.shape,
        values: Array(UnsafeBufferPointer(start: optimizer.momentumBuffer + r.offset, count: r.count)))
    }
  }

  func restoreOptimizer(_ entries: [String: SafeTensors.Entry], path: String) throws {
    for r in net.arena.parameterRanges {
      guard let e = entries["momentum.\(r.name)"], e.values.count == r.count else {
        throw CheckpointError(path: path, reason: "has no momentum for '\(r.name)'")
      }
      e.values.withUnsafeBufferPointer { (optimizer.momentumBuffer + r.offset).update(from: $0.baseAddress!, count: r.count) }
    }
  }

  func writeCheckpoint() throws -> String? {
    guard comm.rank == 0 else { return nil }
    let state = CheckpointState(
      config: config, step: step, epoch: epoch, batchInEpoch: batchInEpoch, worldSize: comm.size,
      seed: config.seed)
    return try Checkpoint.write(
      runDir: config.runDir, arena: net.arena, optimizerState: optimizerEntries(), state: state,
      keep: config.keep)
  }
}
