import Foundation
import Model

#if canImport(Glibc)
  import Glibc
#endif

/// What a checkpoint records besides tensors (`state.json`).
public struct CheckpointState: Codable, Equatable {
  public var format = 1
  public var config: PretrainConfig
  /// Optimizer steps taken.
  public var step: Int
  public var epoch: Int
  /// Batches of `epoch` already consumed (the resume position).
  public var batchInEpoch: Int
  public var worldSize: Int
  public var seed: UInt64
  /// sha256 of every other file in the directory.
  public var files: [String: String] = [:]
}

public struct CheckpointError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String
  public var description: String { "\(path): \(reason)" }
}

/// Checkpoint directories `step-00001234/` under a run directory (format in DESIGN.md).
/// Only rank 0 calls `write`; parameters are replicated, so rank 0 already holds them.
public enum Checkpoint {
  public static func directoryName(step: Int) -> String {
    "step-" + String(format: "%08d", step)
  }

  /// Model tensors keyed by PyTorch `state_dict` names: parameters then BN buffers.
  public static func modelEntries(_ arena: ParameterArena) -> [SafeTensors.Entry] {
    (arena.parameterRanges + arena.bufferRanges).map {
      SafeTensors.Entry(name: $0.name, shape: $0.shape, values: arena.values(of: $0))
    }
  }

  /// Writes `runDir/step-N/` atomically and points `runDir/latest` at it, keeping the newest
  /// `keep` checkpoints. Returns the directory written.
  @discardableResult
  public static func write(
    runDir: String, arena: ParameterArena, optimizerState: [SafeTensors.Entry],
    state: CheckpointState, keep: Int
  ) throws -> String {
    let name = directoryName(step: state.step)
    let final = (runDir as NSString).appendingPathComponent(name)
    let tmp = final + ".tmp"
    let fm = FileManager.default
    try? fm.removeItem(atPath: tmp)
    do {
      try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    } catch {
      throw CheckpointError(path: tmp, reason: "cannot create directory: \(error.localizedDescription)")
    }
    do {
      var state = state
      let model = SafeTensors.encode(modelEntries(arena), metadata: ["format": "pt"])
      let optim = SafeTensors.encode(optimizerState, metadata: ["format": "pt"])
      try AtomicFile.writeSynced(model, to: tmp + "/model.safetensors")
      try AtomicFile.writeSynced(optim, to: tmp + "/optimizer.safetensors")
      state.files = [
        "model.safetensors": SHA256.hex(model), "optimizer.safetensors": SHA256.hex(optim),
      ]
      let enc = JSONEncoder()
      enc.outputFormatting = [.prettyPrinted, .sortedKeys]
      try AtomicFile.writeSynced(try enc.encode(state), to: tmp + "/state.json")
      try AtomicFile.syncDirectory(tmp)
      if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
      guard rename(tmp, final) == 0 else {
        throw AtomicFile.errno(final, "cannot rename \(tmp)")
      }
      try AtomicFile.syncDirectory(runDir)
      try AtomicFile.symlink(name, at: (runDir as NSString).appendingPathComponent("latest"))
    } catch {
      try? fm.removeItem(atPath: tmp)
      throw error
    }
    prune(runDir: runDir, keep: keep)
    return final
  }

  /// Checkpoint directories of a run, oldest first.
  public static func list(runDir: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
    return names.filter { $0.hasPrefix("step-") && !$0.hasSuffix(".tmp") }.sorted()
      .map { (runDir as NSString).appendingPathComponent($0) }
  }

  static func prune(runDir: String, keep: Int) {
    let all = list(runDir: runDir)
    for dir in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: dir) }
  }

  /// Reads and verifies a checkpoint directory: every file's sha256 must match `state.json`.
  public static func load(_ dir: String) throws -> (
    state: CheckpointState, model: [String: SafeTensors.Entry], optimizer: [String: SafeTensors.Entry]
  ) {
    let statePath = dir + "/state.json"
    guard let stateData = FileManager.default.contents(atPath: statePath) else {
      throw CheckpointError(path: statePath, reason: "missing (not a checkpoint directory?)")
    }
    let state: CheckpointState
    do { state = try JSONDecoder().decode(CheckpointState.self, from: stateData) } catch {
      throw CheckpointError(path: statePath, reason: "unreadable: \(error)")
    }
    var loaded: [String: Foundation.Data] = [:]
    for file in ["model.safetensors", "optimizer.safetensors"] {
      let path = dir + "/" + file
      guard let bytes = FileManager.default.contents(atPath: path) else {
        throw CheckpointError(path: path, reason: "missing")
      }
      guard let expected = state.files[file] else {
        throw CheckpointError(path: statePath, reason: "has no sha256 for \(file)")
      }
      guard SHA256.hex(bytes) == expected else {
        throw CheckpointError(path: path, reason: "sha256 does not match state.json (corrupt or modified)")
      }
      loaded[file] = bytes
    }
    let model = try SafeTensors.decode(loaded["model.safetensors"]!, path: dir + "/model.safetensors").entries
    let optim = try SafeTensors.decode(loaded["optimizer.safetensors"]!, path: dir + "/optimizer.safetensors").entries
    return (state, model, optim)
  }

  /// Copies model tensors into the arena; every range must be present with its shape.
  public static func restore(
    _ arena: ParameterArena, from model: [String: SafeTensors.Entry], path: String
  ) throws {
    for r in arena.parameterRanges + arena.bufferRanges {
      guard let e = model[r.name] else {
        throw CheckpointError(path: path, reason: "has no tensor '\(r.name)' (another model?)")
      }
      guard e.shape == r.shape else {
        throw CheckpointError(path: path, reason: "tensor '\(r.name)' has shape \(e.shape), expected \(r.shape)")
      }
      arena.set(r, e.values)
    }
  }

  /// Resolves `latest` or a directory path to a checkpoint directory.
  public static func resolve(_ spec: String, runDir: String) -> String {
    if spec == "latest" { return (runDir as NSString).appendingPathComponent("latest") }
    return spec
  }
}
