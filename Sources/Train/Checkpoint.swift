import Foundation
import Model

#if canImport(Glibc)
  import Glibc
#endif

/// What a checkpoint records besides tensors (`state.json`).
///
/// Randomness needs no saved generator state: every draw of the data pipeline comes from
/// `KeyedRandom(seed, epoch, sample, purpose)` (DESIGN.md invariant 5), so `seed`, `epoch`
/// and `batchInEpoch` are the whole RNG position, and initialisation is replaced by the
/// saved parameters.
public struct CheckpointState: Codable, Equatable {
  public var format = 1
  public var config: PretrainConfig
  /// Optimizer steps taken (the learning-rate schedule's position).
  public var step: Int
  public var epoch: Int
  /// Batches of `epoch` already consumed (the resume position).
  public var batchInEpoch: Int
  public var worldSize: Int
  public var seed: UInt64
  /// `--layerwise`: the stage the next step trains (0-based; the stage count once all are
  /// done) and the steps of it already done. Absent otherwise.
  public var stage: Int? = nil
  public var stageStep: Int? = nil
  /// sha256 of every other file in the directory.
  public var files: [String: String] = [:]
  /// Byte size of every other file (tells a truncated file from a modified one).
  public var sizes: [String: Int]? = nil
}

public struct CheckpointError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
  public var description: String { "\(path): \(reason)" }
}

/// Checkpoint directories `step-00001234/` under a run directory (format in DESIGN.md).
/// Only rank 0 calls `write`, after the ranks have checked that their replicas agree
/// (`Pretrainer.writeCheckpoint`).
public enum Checkpoint {
  public static let files = ["model.safetensors", "optimizer.safetensors"]
  /// The method's state beyond the arena (`SSLMethod.stateEntries`), present only when the
  /// method keeps some; hashed like the others.
  public static let methodFile = "method.safetensors"

  public static func directoryName(step: Int) -> String {
    "step-" + String(format: "%08d", step)
  }

  /// The step of a `step-00001234` directory name (nil for anything else).
  public static func step(ofDirectory path: String) -> Int? {
    let name = (path as NSString).lastPathComponent
    guard name.hasPrefix("step-") else { return nil }
    let digits = name.dropFirst(5)
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
    return Int(digits)
  }

  /// Model tensors keyed by PyTorch `state_dict` names: parameters then BN buffers.
  public static func modelEntries(_ arena: ParameterArena) -> [SafeTensors.Entry] {
    (arena.parameterRanges + arena.bufferRanges).map {
      SafeTensors.Entry(name: $0.name, shape: $0.shape, values: arena.values(of: $0))
    }
  }

  /// Writes `runDir/step-N/` atomically (temp directory → fsync → rename → fsync parent) and
  /// then points `runDir/latest` at it, keeping the newest `keep` checkpoints. Returns the
  /// directory written. On failure the temp directory is removed, the previous checkpoints
  /// and `latest` are untouched, and the error says so. `modelMetadata` goes into
  /// `model.safetensors` (`ModelCard.metadata`: input, normalisation, architecture, …).
  @discardableResult
  public static func write(
    runDir: String, arena: ParameterArena, optimizerState: [SafeTensors.Entry],
    methodState: [SafeTensors.Entry] = [], state: CheckpointState, keep: Int,
    modelMetadata: [String: String] = ["format": "pt"]
  ) throws -> String {
    let name = directoryName(step: state.step)
    let final = (runDir as NSString).appendingPathComponent(name)
    let tmp = final + ".tmp"
    let fm = FileManager.default
    let previous = latestTarget(runDir: runDir)
    try? fm.removeItem(atPath: tmp)
    do {
      do {
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
      } catch {
        throw CheckpointError(path: tmp, reason: "cannot create directory: \(error.localizedDescription)")
      }
      var state = state
      let model = SafeTensors.encode(modelEntries(arena), metadata: modelMetadata)
      let optim = SafeTensors.encode(optimizerState, metadata: ["format": "pt"])
      try AtomicFile.writeSynced(model, to: tmp + "/model.safetensors")
      try AtomicFile.writeSynced(optim, to: tmp + "/optimizer.safetensors")
      state.files = [
        "model.safetensors": SHA256.hex(model), "optimizer.safetensors": SHA256.hex(optim),
      ]
      state.sizes = ["model.safetensors": model.count, "optimizer.safetensors": optim.count]
      if !methodState.isEmpty {
        let bytes = SafeTensors.encode(methodState, metadata: ["format": "pt"])
        try AtomicFile.writeSynced(bytes, to: tmp + "/" + methodFile)
        state.files[methodFile] = SHA256.hex(bytes)
        state.sizes?[methodFile] = bytes.count
      }
      let enc = JSONEncoder()
      enc.outputFormatting = [.prettyPrinted, .sortedKeys]
      try AtomicFile.writeSynced(try enc.encode(state), to: tmp + "/state.json")
      try AtomicFile.syncDirectory(tmp)
      // A directory of the same step exists only when a run resumed from an older
      // checkpoint and has now caught up with it: this one replaces it.
      if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
      guard rename(tmp, final) == 0 else {
        throw AtomicFile.errno(final, "cannot rename \(tmp)")
      }
      try AtomicFile.syncDirectory(runDir)
      try AtomicFile.symlink(name, at: (runDir as NSString).appendingPathComponent("latest"))
    } catch {
      try? fm.removeItem(atPath: tmp)
      let kept = previous.map { "\($0) is unchanged and still `latest`" } ?? "there is no earlier checkpoint"
      throw CheckpointError(
        path: final, reason: "checkpoint of step \(state.step) not written (\(error)); \(kept)")
    }
    prune(runDir: runDir, keep: keep, newest: state.step)
    return final
  }

  /// Checkpoint directories of a run, oldest first.
  public static func list(runDir: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
    return names.filter { step(ofDirectory: $0) != nil }.sorted()
      .map { (runDir as NSString).appendingPathComponent($0) }
  }

  /// The directory `runDir/latest` points at, if it exists.
  public static func latestTarget(runDir: String) -> String? {
    let link = (runDir as NSString).appendingPathComponent("latest")
    guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else { return nil }
    let path = target.hasPrefix("/") ? target : (runDir as NSString).appendingPathComponent(target)
    return FileManager.default.fileExists(atPath: path) ? path : nil
  }

  /// Keeps the `keep` newest checkpoints up to step `newest` (the one just written).
  /// Directories of later steps belong to a run this one resumed before; they are left
  /// alone (the run replaces each when it reaches its step).
  static func prune(runDir: String, keep: Int, newest: Int) {
    let older = list(runDir: runDir).filter { (step(ofDirectory: $0) ?? .max) <= newest }
    for dir in older.dropLast(keep) { try? FileManager.default.removeItem(atPath: dir) }
  }

  public typealias Loaded = (
    state: CheckpointState, model: [String: SafeTensors.Entry], optimizer: [String: SafeTensors.Entry],
    method: [String: SafeTensors.Entry]
  )

  /// Reads and verifies a checkpoint directory: every file must be present with the size
  /// and sha256 that `state.json` records. Errors name the offending file.
  public static func load(_ dir: String) throws -> Loaded {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
      throw CheckpointError(path: dir, reason: "no such checkpoint directory")
    }
    let statePath = dir + "/state.json"
    guard let stateData = FileManager.default.contents(atPath: statePath) else {
      throw CheckpointError(path: statePath, reason: "missing (not a checkpoint directory?)")
    }
    let state: CheckpointState
    do { state = try JSONDecoder().decode(CheckpointState.self, from: stateData) } catch {
      throw CheckpointError(path: statePath, reason: "unreadable (corrupt?): \(error)")
    }
    guard state.format == 1 else {
      throw CheckpointError(path: statePath, reason: "format \(state.format) is not supported (expected 1)")
    }
    guard state.step >= 0, state.epoch >= 0, state.batchInEpoch >= 0, state.worldSize >= 1 else {
      throw CheckpointError(
        path: statePath,
        reason: "step \(state.step), epoch \(state.epoch), batch \(state.batchInEpoch), world size \(state.worldSize): out of range (corrupt?)")
    }
    if let sizes = state.sizes, let bad = sizes.first(where: { $0.value < 0 }) {
      throw CheckpointError(path: statePath, reason: "size \(bad.value) of \(bad.key) is negative (corrupt?)")
    }
    var loaded: [String: Foundation.Data] = [:]
    for file in files + (state.files[methodFile] != nil ? [methodFile] : []) {
      let path = dir + "/" + file
      guard let bytes = FileManager.default.contents(atPath: path) else {
        throw CheckpointError(path: path, reason: "missing")
      }
      guard let expected = state.files[file] else {
        throw CheckpointError(path: statePath, reason: "has no sha256 for \(file)")
      }
      if let size = state.sizes?[file], size != bytes.count {
        throw CheckpointError(
          path: path, reason: bytes.count < size
            ? "truncated: \(bytes.count) of \(size) bytes" : "has \(bytes.count) bytes, state.json says \(size)")
      }
      guard SHA256.hex(bytes) == expected else {
        throw CheckpointError(path: path, reason: "sha256 does not match state.json (corrupt or modified)")
      }
      loaded[file] = bytes
    }
    let model = try SafeTensors.decode(loaded["model.safetensors"]!, path: dir + "/model.safetensors").entries
    let optim = try SafeTensors.decode(loaded["optimizer.safetensors"]!, path: dir + "/optimizer.safetensors").entries
    let method = try loaded[methodFile].map {
      try SafeTensors.decode($0, path: dir + "/" + methodFile).entries
    } ?? [:]
    return (state, model, optim, method)
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

  /// Loads the checkpoint `spec` names. A directory must verify. `latest` tries what
  /// `runDir/latest` points at and then, newest first, the older checkpoints of the run,
  /// saying in `notes` which were refused and why.
  public static func loadForResume(_ spec: String, runDir: String) throws -> (dir: String, loaded: Loaded, notes: [String]) {
    guard spec == "latest" else { return (spec, try load(spec), []) }
    var candidates: [String] = []
    let all = list(runDir: runDir)
    if let target = latestTarget(runDir: runDir), let s = step(ofDirectory: target) {
      candidates = [target] + all.filter { (step(ofDirectory: $0) ?? .max) < s }.reversed()
    } else {
      candidates = all.reversed()
    }
    guard !candidates.isEmpty else {
      throw CheckpointError(path: runDir, reason: "--resume latest: no checkpoint in this run directory")
    }
    var notes: [String] = []
    for (i, dir) in candidates.enumerated() {
      do {
        let loaded = try load(dir)
        if i > 0 { notes.append("falling back to the previous good checkpoint \(dir)") }
        return (dir, loaded, notes)
      } catch {
        notes.append("refused checkpoint \(dir): \(error)")
      }
    }
    throw CheckpointError(
      path: runDir, reason: "--resume latest: no usable checkpoint:\n  " + notes.joined(separator: "\n  "))
  }
}

extension Checkpoint {
  /// Entries in a stable order: by name.
  public static func modelOrder(_ model: [String: SafeTensors.Entry]) -> [SafeTensors.Entry] {
    model.keys.sorted().map { model[$0]! }
  }
}
