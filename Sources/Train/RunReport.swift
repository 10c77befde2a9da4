import Foundation

/// A report error: the file (and line) it is about, and what is wrong.
public struct ReportError: Error, CustomStringConvertible {
  public var path: String
  public var reason: String
  public var description: String { "\(path): \(reason)" }
}

/// One pretraining run as `parallax report` reads it from its directory: `log.jsonl` (the
/// steps), `config.yaml`, `run.json` and `probes.json` when present (`RunRecord`), and the
/// `--timeline` trace when one was recorded.
public struct RunData {
  /// One line of `log.jsonl` (`StepLog`).
  public struct Step {
    public var step: Int
    public var epoch: Int
    public var loss: Double
    /// Each task's loss, when the method has several.
    public var losses: [String: Double]
    public var lr: Double?
    public var samplesPerSecond: Double?
    public var computeMs: Double?
    public var commMs: Double?
    public var allReduceMs: Double?
    public var hidden: Double?
  }

  public var dir: String
  /// What the report calls the run (its directory's name, unless two runs share it).
  public var name: String
  public var steps: [Step]
  public var config: PretrainConfig?
  public var summary: RunRecord.Summary?
  public var probes: RunRecord.Probes?
  /// Per rank, per step: (step, step ms, exposed wait ms), from the timeline.
  public var rankSteps: [Int: [(step: Int, ms: Double, exposedMs: Double)]] = [:]
  public var timelinePath: String?
  /// What was skipped or missing, for the report's notes.
  public var notes: [String] = []

  /// Reads a run directory.
  /// - Throws: `ReportError` naming the file: no `log.jsonl`, a line that is not a JSON
  ///   object with `step` and `loss` (except a cut-off last line, which is noted and
  ///   skipped: a killed run leaves one).
  public static func load(_ dir: String) throws -> RunData {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
      throw ReportError(path: dir, reason: "no such run directory")
    }
    let logPath = dir + "/log.jsonl"
    guard let data = FileManager.default.contents(atPath: logPath) else {
      throw ReportError(path: logPath, reason: "missing (not a run directory of `parallax pretrain`?)")
    }
    var run = RunData(dir: dir, name: (dir as NSString).lastPathComponent, steps: [])
    let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    var byStep: [Int: Step] = [:]
    let lastLine = lines.lastIndex { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? 0
    for (i, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      let isLast = i == lastLine
      guard let step = parse(line) else {
        if isLast {
          run.notes.append("\(logPath): line \(i + 1) is cut off (the run was killed while writing it); skipped")
          continue
        }
        throw ReportError(path: "\(logPath):\(i + 1)", reason: "not a log.jsonl line (a JSON object with step and loss)")
      }
      // A resumed run logs again from its checkpoint: the later line wins.
      byStep[step.step] = step
    }
    guard !byStep.isEmpty else { throw ReportError(path: logPath, reason: "has no steps") }
    run.steps = byStep.keys.sorted().map { byStep[$0]! }

    let configPath = dir + "/config.yaml"
    if FileManager.default.fileExists(atPath: configPath) {
      do { run.config = try PretrainConfig.load(yamlPath: configPath) } catch {
        run.notes.append("\(error); the configuration is not shown")
      }
    } else {
      run.notes.append("\(configPath): missing")
    }
    run.summary = try decodeIfPresent(RunRecord.Summary.self, dir + "/run.json", notes: &run.notes)
    run.probes = try decodeIfPresent(RunRecord.Probes.self, dir + "/probes.json", notes: &run.notes)
    if let path = timeline(run) {
      do {
        run.rankSteps = try rankSteps(timeline: path)
        run.timelinePath = path
      } catch { run.notes.append("\(error); no per-rank plot") }
    }
    return run
  }

  static func parse(_ line: Substring) -> Step? {
    guard let object = try? JSONSerialization.jsonObject(with: Foundation.Data(line.utf8)) as? [String: Any],
      let step = (object["step"] as? NSNumber)?.intValue, let loss = (object["loss"] as? NSNumber)?.doubleValue
    else { return nil }
    func number(_ key: String) -> Double? { (object[key] as? NSNumber)?.doubleValue }
    var losses: [String: Double] = [:]
    for (k, v) in object["losses"] as? [String: Any] ?? [:] {
      if let x = (v as? NSNumber)?.doubleValue { losses[k] = x }
    }
    return Step(
      step: step, epoch: (object["epoch"] as? NSNumber)?.intValue ?? 0, loss: loss, losses: losses, lr: number("lr"),
      samplesPerSecond: number("samples_per_s"), computeMs: number("compute_ms"), commMs: number("comm_ms"),
      allReduceMs: number("allreduce_ms"), hidden: number("hidden"))
  }

  /// A JSON file of the run, nil when absent; a file that does not decode is an error
  /// naming it.
  static func decodeIfPresent<T: Decodable>(_ type: T.Type, _ path: String, notes: inout [String]) throws -> T? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    do { return try JSONDecoder().decode(T.self, from: data) } catch {
      throw ReportError(path: path, reason: "unreadable (corrupt?): \(error)")
    }
  }

  /// The timeline file of `--timeline`: as recorded (absolute, or relative to where the run
  /// started, often the current directory), else a file of that name in the run directory.
  static func timeline(_ run: RunData) -> String? {
    guard let t = run.config?.timeline, !t.isEmpty else { return nil }
    let candidates = [t, run.dir + "/" + (t as NSString).lastPathComponent]
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
  }

  /// Each rank's step spans (`step` events of the communication track).
  static func rankSteps(timeline path: String) throws -> [Int: [(step: Int, ms: Double, exposedMs: Double)]] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ReportError(path: path, reason: "cannot read the timeline")
    }
    guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let events = json["traceEvents"] as? [[String: Any]]
    else { throw ReportError(path: path, reason: "not a trace-event timeline (no traceEvents)") }
    var out: [Int: [(step: Int, ms: Double, exposedMs: Double)]] = [:]
    for e in events where (e["cat"] as? String) == "step" {
      guard let pid = (e["pid"] as? NSNumber)?.intValue, let dur = (e["dur"] as? NSNumber)?.doubleValue,
        let args = e["args"] as? [String: Any], let step = (args["step"] as? NSNumber)?.intValue
      else { continue }
      out[pid, default: []].append((step, dur / 1000, (args["exposed_ms"] as? NSNumber)?.doubleValue ?? 0))
    }
    return out.mapValues { $0.sorted { $0.step < $1.step } }
  }

  /// Wall time of the pretraining: `run.json`'s, else the sum of the logged step times
  /// (approximate: only logged steps, without checkpoints).
  public var wallSeconds: (seconds: Double, exact: Bool)? {
    if let s = summary { return (s.seconds, true) }
    let ms = steps.compactMap { s in s.computeMs.map { $0 + (s.commMs ?? 0) } }
    return ms.isEmpty ? nil : (ms.reduce(0, +) / 1000, false)
  }
}

/// `parallax report`: `report.md` with SVG plots of one run (loss and lr against step,
/// throughput, compute against communication per step, the share of communication hidden
/// behind backward, per-rank step times when a timeline was recorded, probe accuracies) and
/// a summary table; with several runs, one comparison plot per metric (a series per run),
/// the summary as one row per run and the settings that differ between them.
public enum RunReport {
  /// Writes `report.md` and its SVGs into `out` (created if needed); returns the files
  /// written, report first.
  public static func write(_ runs: [RunData], to out: String) throws -> [String] {
    precondition(!runs.isEmpty)
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    var runs = runs
    // Runs of the same directory name are told apart by their paths.
    let names = runs.map(\.name)
    for i in runs.indices where names.filter({ $0 == runs[i].name }).count > 1 { runs[i].name = runs[i].dir }
    let single = runs.count == 1
    var figures: [(file: String, caption: String, svg: String)] = []
    func series(_ value: (RunData.Step) -> Double?) -> [SVGPlot.Series] {
      runs.map { r in SVGPlot.Series(r.name, r.steps.compactMap { s in value(s).map { (x: Double(s.step), y: $0) } }) }
    }
    func plot(_ file: String, _ caption: String, _ title: String, _ y: String, _ s: [SVGPlot.Series], fromZero: Bool = false) {
      guard s.contains(where: { !$0.points.isEmpty }) else { return }
      var p = SVGPlot(title: title, xLabel: "step", yLabel: y, series: s)
      p.yFromZero = fromZero
      figures.append((file, caption, p.render()))
    }

    // Loss (with each task's when there are several).
    if single, let r = runs.first {
      var s = [SVGPlot.Series("loss (total)", r.steps.map { (x: Double($0.step), y: $0.loss) })]
      for task in Set(r.steps.flatMap { $0.losses.keys }).sorted() {
        s.append(SVGPlot.Series(task, r.steps.compactMap { e in e.losses[task].map { (x: Double(e.step), y: $0) } }, dashed: true))
      }
      plot("loss.svg", "Training loss per step", "\(r.name): loss", "loss", s)
    } else {
      plot("loss.svg", "Training loss per step, by run", "loss", "loss", series { $0.loss })
    }
    plot("lr.svg", "Learning rate (warm-up, then cosine decay)", single ? "\(runs[0].name): learning rate" : "learning rate", "lr", series { $0.lr }, fromZero: true)
    plot("throughput.svg", "Throughput of each step (global batch ÷ step time)", single ? "\(runs[0].name): throughput" : "throughput", "samples/s", series { $0.samplesPerSecond }, fromZero: true)
    if single, let r = runs.first {
      var s = [
        SVGPlot.Series("compute (incl. data, optimizer)", r.steps.compactMap { e in e.computeMs.map { (x: Double(e.step), y: $0) } }),
        SVGPlot.Series("communication exposed", r.steps.compactMap { e in e.commMs.map { (x: Double(e.step), y: $0) } }),
      ]
      let all = r.steps.compactMap { e in e.allReduceMs.map { (x: Double(e.step), y: $0) } }
      if !all.isEmpty { s.append(SVGPlot.Series("all-reduce, hidden + exposed", all, dashed: true)) }
      plot("time.svg", "Where each step's time went", "\(r.name): compute vs communication", "ms per step", s, fromZero: true)
    } else {
      plot("compute.svg", "Compute time per step (incl. data and optimizer), by run", "compute per step", "ms", series { $0.computeMs }, fromZero: true)
      plot("comm.svg", "Exposed communication per step (not hidden behind backward), by run", "exposed communication per step", "ms", series { $0.commMs }, fromZero: true)
    }
    if runs.contains(where: { $0.steps.contains { $0.hidden != nil } }) {
      var s = series { $0.hidden.map { $0 * 100 } }
      s.removeAll { $0.points.isEmpty }
      var p = SVGPlot(title: "all-reduce hidden behind backward", xLabel: "step", yLabel: "% of the all-reduce time", series: s)
      p.yRange = 0...100
      figures.append(("hidden.svg", "Share of the gradient all-reduce hidden behind backward (1 − exposed / all-reduce)", p.render()))
    }
    // Per-rank step times from the timeline.
    for (i, r) in runs.enumerated() where !r.rankSteps.isEmpty {
      var s = r.rankSteps.keys.sorted().map { rank in
        SVGPlot.Series("rank \(rank) step", r.rankSteps[rank]!.map { (x: Double($0.step), y: $0.ms) })
      }
      s += r.rankSteps.keys.sorted().map { rank in
        SVGPlot.Series("rank \(rank) exposed wait", r.rankSteps[rank]!.map { (x: Double($0.step), y: $0.exposedMs) }, dashed: true)
      }
      for j in s.indices { s[j].color = SVGPlot.palette[j % (s.count / 2) % SVGPlot.palette.count] }
      var p = SVGPlot(title: "\(r.name): per-rank step time (timeline)", xLabel: "step", yLabel: "ms", series: s)
      p.yFromZero = true
      let file = single ? "ranks.svg" : "ranks-\(i + 1).svg"
      figures.append((file, "Each rank's step time and its wait for the gradients, from the timeline \(r.timelinePath ?? "")", p.render()))
    }
    // Probes.
    let probeNames = orderedUnion(runs.map { $0.probes?.probes.map(\.name) ?? [] })
    if !probeNames.isEmpty {
      let groups = probeNames.map { name in
        (label: name, values: runs.map { r in r.probes?.probes.first { $0.name == name }.map { $0.accuracy * 100 } })
      }
      var bars = SVGBars(title: "linear-probe test accuracy", unit: "%", seriesNames: runs.map(\.name), groups: groups)
      bars.maximum = 100
      figures.append(("probes.svg", "Linear-probe test accuracy (frozen features)", bars.render()))
    }

    var md = "# Parallax report\n\n"
    md += (single ? "Run `\(runs[0].dir)`" : "Runs " + runs.map { "`\($0.dir)`" }.joined(separator: ", ")) + ".\n\n"
    md += "## Summary\n\n" + summaryTable(runs) + "\n"
    md += configurationSection(runs)
    if !probeNames.isEmpty {
      md += "## Probes\n\n| features | " + runs.map(\.name).joined(separator: " | ") + " |\n|---|" + runs.map { _ in "---:|" }.joined() + "\n"
      for name in probeNames {
        let cells = runs.map { r in r.probes?.probes.first { $0.name == name }.map { String(format: "%.2f %%", $0.accuracy * 100) } ?? "–" }
        md += "| \(name) | " + cells.joined(separator: " | ") + " |\n"
      }
      md += "\n"
    }
    md += "## Plots\n\n"
    var written: [String] = []
    for f in figures {
      let path = (out as NSString).appendingPathComponent(f.file)
      try AtomicFile.write(Foundation.Data(f.svg.utf8), to: path)
      written.append(path)
      md += "### \(f.caption)\n\n![\(f.caption)](\(f.file))\n\n"
    }
    let notes = runs.flatMap { r in r.notes.map { "- \(r.name): \($0)" } }
    if !notes.isEmpty { md += "## Notes\n\n" + notes.joined(separator: "\n") + "\n" }
    let report = (out as NSString).appendingPathComponent("report.md")
    try AtomicFile.write(Foundation.Data(md.utf8), to: report)
    return [report] + written
  }

  static func summaryTable(_ runs: [RunData]) -> String {
    var md = "| run | method | model | data | ranks × threads | global batch | steps | wall time | samples/s | final loss | best probe |\n"
    md += "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    for r in runs {
      let c = r.config
      let s = r.summary
      let last = r.steps.last
      let ranks = s.map { "\($0.worldSize) × \($0.threadsPerRank)" } ?? (r.rankSteps.isEmpty ? "–" : "\(r.rankSteps.count)")
      let steps = s.map { "\($0.finalStep) of \($0.totalSteps)" } ?? last.map { "\($0.step)" } ?? "–"
      let wall = r.wallSeconds.map { ($0.exact ? "" : "≈ ") + Console.duration($0.seconds) } ?? "–"
      let rate = s.map { String(format: "%.1f", $0.samplesPerSecond) }
        ?? median(r.steps.compactMap(\.samplesPerSecond)).map { String(format: "%.1f (median)", $0) } ?? "–"
      let loss = last.map { String(format: "%.4f", $0.loss) } ?? "–"
      let best = r.probes?.probes.max { $0.accuracy < $1.accuracy }.map { String(format: "%.2f %% (%@)", $0.accuracy * 100, $0.name) } ?? "–"
      let cells = [
        r.name, c?.method.rawValue ?? s?.method ?? "–", c?.model.rawValue ?? s?.model ?? "–", c?.data.rawValue ?? s?.data ?? "–",
        ranks, (c?.globalBatch).map { "\($0)" } ?? "–", steps, wall, rate, loss, best,
      ]
      md += "| " + cells.joined(separator: " | ") + " |\n"
    }
    return md
  }

  /// One run: its options that differ from the defaults. Several: the options whose values
  /// differ between the runs.
  static func configurationSection(_ runs: [RunData]) -> String {
    let configs = runs.map(\.config)
    guard configs.contains(where: { $0 != nil }) else { return "" }
    let defaults = PretrainConfig()
    var rows: [(String, [String])] = []
    for option in PretrainConfig.allOptions {
      let values = configs.map { $0.map { $0.value(option).optionText } ?? "–" }
      let differs = runs.count == 1 ? values[0] != defaults.value(option).optionText : Set(values).count > 1
      if differs { rows.append((option.key, values)) }
    }
    guard !rows.isEmpty else { return "" }
    var md = runs.count == 1 ? "## Configuration (options not at their defaults)\n\n| option | value |\n|---|---|\n"
      : "## Settings that differ between the runs\n\n| option | " + runs.map(\.name).joined(separator: " | ") + " |\n|---|" + runs.map { _ in "---|" }.joined() + "\n"
    for (key, values) in rows { md += "| `\(key)` | " + values.map { $0.isEmpty ? "\"\"" : $0 }.joined(separator: " | ") + " |\n" }
    return md + "\n"
  }

  static func orderedUnion(_ lists: [[String]]) -> [String] {
    var seen = Set<String>()
    return lists.flatMap { $0 }.filter { seen.insert($0).inserted }
  }

  static func median(_ x: [Double]) -> Double? { x.isEmpty ? nil : x.sorted()[x.count / 2] }
}
