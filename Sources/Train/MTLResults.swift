import Foundation

/// What `parallax mtl` measures and writes: per-task test accuracy, Δm % against single-task
/// baselines (`baselines.json`), and seconds per step (`mtl.json`).
public enum MTLResults {
  /// One trained configuration.
  public struct Run: Sendable {
    public var tasks: [String]
    /// Fraction correct on the test split, per task.
    public var accuracy: [Double]
    public var steps: Int
    /// Wall time of the training loop over its steps (data, compute, communication,
    /// optimizer, and the final checkpoint).
    public var secondsPerStep: Double
    public var finalLoss: Float

    public init(tasks: [String], accuracy: [Double], steps: Int, secondsPerStep: Double, finalLoss: Float) {
      self.tasks = tasks
      self.accuracy = accuracy
      self.steps = steps
      self.secondsPerStep = secondsPerStep
      self.finalLoss = finalLoss
    }
  }

  /// Δm % as LibMTL reports it:
  ///
  ///     Δm = (1/T) Σₜ (−1)^lₜ (Mₜ − Mₜ,single) / Mₜ,single × 100
  ///
  /// with lₜ = 0 (accuracy: higher is better) for every task here.
  /// - Throws: `ConfigError` naming `path` when a task has no baseline or a baseline is not
  ///   positive.
  public static func deltaM(tasks: [String], accuracy: [Double], single: [String: Double], path: String) throws -> Double {
    var sum = 0.0
    for (t, m) in zip(tasks, accuracy) {
      guard let b = single[t] else {
        throw ConfigError(message: "\(path): no single-task baseline for task '\(t)' (has \(single.keys.sorted().joined(separator: ", ")))")
      }
      guard b > 0, b.isFinite else { throw ConfigError(message: "\(path): baseline of '\(t)' is \(b), not positive") }
      sum += (m - b) / b
    }
    return 100 * sum / Double(tasks.count)
  }

  /// `{"tasks": {"left": 0.81, …}}`, fractions correct.
  public static func writeBaselines(_ single: [String: Double], tasks: [String], to path: String) throws {
    let object: [String: Any] = ["tasks": Dictionary(uniqueKeysWithValues: tasks.map { ($0, single[$0] ?? .nan) })]
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: path)
  }

  /// Reads what `writeBaselines` wrote.
  /// - Throws: `ConfigError` naming the file when it is missing or malformed.
  public static func readBaselines(_ path: String) throws -> [String: Double] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ConfigError(message: "--baselines: cannot read \(path) (write it with parallax mtl --single-task)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let tasks = object["tasks"] as? [String: Any]
    else { throw ConfigError(message: "--baselines: \(path) is not a baselines.json ({\"tasks\": {name: accuracy}})") }
    var out: [String: Double] = [:]
    for (k, v) in tasks {
      guard let x = (v as? NSNumber)?.doubleValue, x.isFinite, (0...1).contains(x) else {
        throw ConfigError(message: "--baselines: \(path): accuracy of '\(k)' is \(v), not a fraction in [0, 1]")
      }
      out[k] = x
    }
    return out
  }

  /// `mtl.json`: the balancing, tasks with accuracy, Δm, step time and the settings that
  /// shape the figure.
  public static func write(_ r: Run, deltaM: Double?, config c: PretrainConfig, to path: String) throws {
    var object: [String: Any] = [
      "mtl": c.mtl.rawValue, "mgda_on": c.mgdaOn.rawValue, "model": c.model.rawValue, "data": c.data.rawValue,
      "global_batch": c.globalBatch, "steps": r.steps, "seconds_per_step": r.secondsPerStep,
      "final_loss": Double(r.finalLoss), "seed": c.seed,
      "accuracy": Dictionary(uniqueKeysWithValues: zip(r.tasks, r.accuracy).map { ($0, $1) }),
      "tasks": r.tasks,
    ]
    if let d = deltaM { object["delta_m_percent"] = d }
    let specific = SupervisedMTLMethod.taskSpecificLayers(c)
    if !specific.isEmpty { object["task_specific"] = specific }
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: path)
  }

  /// `conflicts.json` / `recon.json`: Recon's S-conflict counts per shared layer (ranked),
  /// the steps and task pairs they are out of, the threshold S, and (`chosen`) the layers
  /// made task-specific.
  public static func writeRecon(_ c: LayerConflicts, chosen: [String]?, to path: String) throws {
    var object: [String: Any] = [
      "threshold": c.threshold, "steps": c.steps, "pairs_per_step": c.pairs,
      "layers": c.ranked.map { ["layer": $0.layer, "conflicts": $0.conflicts] as [String: Any] },
    ]
    if let chosen { object["task_specific"] = chosen }
    try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: path)
  }
}
