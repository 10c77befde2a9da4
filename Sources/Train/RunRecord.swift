import Foundation

/// What rank 0 leaves in the run directory besides `log.jsonl` and the events, for
/// `parallax report`: `run.json` (how the run went) and `probes.json` (the linear probes
/// of `--probe`, also appended to the TensorBoard events as `probe/<name>`).
public enum RunRecord {
  /// `run.json`: one object per pretraining process (a resumed run replaces it).
  public struct Summary: Codable, Equatable {
    public var method: String
    public var model: String
    public var data: String
    public var worldSize: Int
    public var nodes: Int
    public var threadsPerRank: Int
    public var globalBatch: Int
    /// Steps done by this process, and the step it ended at, of `totalSteps`.
    public var steps: Int
    public var finalStep: Int
    public var totalSteps: Int
    public var seconds: Double
    public var samplesPerSecond: Double
    public var finalLoss: Double?
    public var checkpoint: String?
    public var stopReason: String?
    public var resumedFrom: String?
    public var host: String
    public var version: String
    public var commit: String
    /// ISO 8601, UTC.
    public var finished: String
  }

  /// One linear probe: the features' name (`simclr conv4 (pre-pool)`, `raw pixels`) and its
  /// test accuracy in [0, 1].
  public struct Probe: Codable, Equatable {
    public var name: String
    public var accuracy: Double
  }

  /// `probes.json`.
  public struct Probes: Codable, Equatable {
    public var step: Int
    public var probes: [Probe]
  }

  /// Writes `run.json` after pretraining (rank 0).
  public static func write(
    summary s: PretrainSummary, trainer: Pretrainer, worldSize: Int, nodes: Int, threads: Int
  ) throws {
    let c = trainer.config
    let record = Summary(
      method: c.method.rawValue, model: c.model.rawValue, data: c.data.rawValue, worldSize: worldSize, nodes: nodes,
      threadsPerRank: threads, globalBatch: c.globalBatch, steps: s.steps, finalStep: trainer.step,
      totalSteps: trainer.totalSteps, seconds: s.seconds, samplesPerSecond: s.samplesPerSecond,
      finalLoss: s.finalLoss.isFinite ? Double(s.finalLoss) : nil, checkpoint: s.checkpoint, stopReason: s.stopReason,
      resumedFrom: trainer.resumedFrom, host: EventFile.hostName(), version: BuildInfo.version,
      commit: BuildInfo.commit, finished: ISO8601DateFormatter().string(from: Date()))
    try AtomicFile.write(try encoder.encode(record), to: c.runDir + "/run.json")
  }

  /// Writes `probes.json` and appends the accuracies to the run's event file as
  /// `probe/<name>` at `step` (rank 0).
  public static func recordProbes(
    _ rows: [(name: String, accuracy: Double)], runDir: String, eventFile: String?, step: Int
  ) throws {
    guard !rows.isEmpty else { return }
    let probes = Probes(step: step, probes: rows.map { Probe(name: $0.name, accuracy: $0.accuracy) })
    try AtomicFile.write(try encoder.encode(probes), to: runDir + "/probes.json")
    guard let eventFile else { return }
    try EventFile(appendingTo: eventFile).write(
      scalars: rows.map { (tag: probeTag($0.name), value: Float($0.accuracy)) }, step: step)
  }

  /// `simclr conv4 (pre-pool)` → `probe/simclr_conv4_pre-pool`.
  public static func probeTag(_ name: String) -> String {
    var out = ""
    for ch in name.lowercased() {
      if ch.isLetter || ch.isNumber || ch == "-" || ch == "." {
        out.append(ch)
      } else if !out.isEmpty && out.last != "_" {
        out.append("_")
      }
    }
    while out.last == "_" { out.removeLast() }
    return "probe/" + out
  }

  static var encoder: JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    return e
  }
}
