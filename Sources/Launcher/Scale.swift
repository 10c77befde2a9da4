import ArgumentParser
import Foundation
import Model
import Train

/// `parallax scale`: the same short pretraining at several rank counts (through `mpirun`,
/// optionally with a hostfile), measured from each run's timeline, written as CSV, a
/// Markdown table and an SVG chart.
///
/// Weak scaling: every rank holds `--batch-per-rank` samples, so the global batch grows with
/// the ranks. Per step (after `--warmup` steps) the step time is the slowest rank's; a step's
/// communication is the union of its bucket all-reduces from start to observed completion,
/// the exposed part is the wait after backward, and hidden = 1 − exposed/communication.
/// With `--compare-fused` each multi-rank count also runs with one fused all-reduce after
/// backward; "hidden vs fused" = 1 − exposed(bucketed)/exposed(fused) then measures how much
/// of the all-reduce the overlap removed from the step.
struct Scale: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Scaling study: pretraining at several rank counts → CSV, Markdown and SVG.")
  @Option(help: "Rank counts, comma-separated.") var ranks: String = "1,2"
  @Option(help: "Encoder: conv4 or resnet18.") var model: String = "conv4"
  @Option(help: "Timed steps per run.") var steps: Int = 8
  @Option(help: "Untimed steps first.") var warmup: Int = 2
  @Option(help: "Samples per rank per step (weak scaling).") var batchPerRank: Int = 128
  @Option(help: "OpenBLAS threads per rank.") var threads: Int = 1
  @Option(help: "GEMM operand precision of the pretraining runs: fp32 or bf16.") var precision: GemmPrecision = .fp32
  @Option(help: "Gradient bucket cap in MiB.") var bucketMB: Double = 4
  @Option(help: "MPI progress during backward: poll or thread.") var syncProgress: String = "poll"
  @Option(help: "Also run each multi-rank count fused (bucket-mb 0) to measure what overlap hides: true or false.") var compareFused: Bool = true
  @Option(help: "mpirun hostfile (runs across its hosts).") var hostfile: String?
  @Option(help: "mpirun --bind-to value.") var bindTo: String = "core"
  @Option(help: "Output directory.") var out: String = "bench/scale"
  @Option(help: "Directory of the Fashion-MNIST IDX files.") var dataDir: String = "/usr/share/datasets/fashion-mnist"
  @Flag(help: "Fit an α–β model of the transport and predict step time, samples/s and efficiency for many nodes and link speeds (see cluster/README.md).") var predict = false
  @Option(help: "Command that replaces `mpirun` for runs on the transport under study, e.g. 'cluster/local-hosts mpirun' (--predict).") var launcher: String?
  @Option(help: "Label of the transport (--predict), e.g. 200mbit-1ms.") var link: String = "local"
  @Option(help: "Smallest all-reduce of the transport sweep in bytes (--predict).") var sweepMinBytes: Int = 256
  @Option(help: "Largest all-reduce of the transport sweep in bytes (--predict).") var sweepMaxBytes: Int = 4 << 20
  @Option(help: "Sweep sizes per doubling (--predict; 2 also times the geometric midpoints, so a size-regime switch is placed within half an octave).") var sweepPerOctave: Int = 2
  @Option(help: "Node counts to predict for (--predict).") var nodes: String = "2,4,8,16,32,64,128,256,512,1024"
  @Option(help: "Link speeds in Gbit/s to predict for (--predict).") var linkSpeeds: String = "1,10,25,100"
  @Option(help: "Latency α in µs for those link speeds (default: the fitted α) (--predict).") var alphaUs: Double?
  @Option(help: "Command that shapes the transport's links, run before the sweep and each validation run (--predict), e.g. 'cluster/local-hosts shape --bandwidth 50mbit'.") var shapeCmd: String?
  @Option(help: "Command that removes the shaping, run before each compute-profile run, which then runs through --launcher on the same hosts (--predict), e.g. 'cluster/local-hosts shape'. Without it the profile runs on this machine's shared memory.") var unshapeCmd: String?
  @Flag(help: "Reuse the transport sweep CSVs already in --out instead of measuring again (--predict).") var reuseSweep = false
  @Option(name: .customLong("validate"), help: "Measure the --ranks counts on the transport and compare with the prediction: true or false (--predict).") var validateOnTransport: Bool = true

  struct Measure {
    var ranks: Int
    var mode: String
    var stepSeconds: Double
    var samplesPerSecond: Double
    var commSeconds: Double
    var exposedSeconds: Double
  }

  func validate() throws {
    guard !rankList.isEmpty, rankList.allSatisfy({ $0 > 0 }) else { throw ValidationError("--ranks: e.g. 1,2,4") }
    guard steps > 0, warmup >= 0, batchPerRank > 0 else { throw ValidationError("--steps, --batch-per-rank must be positive") }
  }

  var rankList: [Int] { ranks.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

  func run() throws {
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    if predict { return try runPredict() }
    var results: [Measure] = []
    for n in rankList {
      results.append(try measure(ranks: n, bucketMB: bucketMB, mode: n > 1 ? "bucketed" : "single"))
      if compareFused && n > 1 { results.append(try measure(ranks: n, bucketMB: 0, mode: "fused")) }
    }
    try write(results)
  }

  func measure(ranks n: Int, bucketMB: Double, mode: String) throws -> Measure {
    let dir = out + "/run-\(model)-\(n)-\(mode)"
    try pretrainRun(ranks: n, bucketMB: bucketMB, dir: dir, launcher: nil)
    return try parse(timeline: dir + "/timeline.json", ranks: n, mode: mode)
  }

  /// This executable's path (for mpirun to start).
  static var me: String {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    return FileManager.default.fileExists(atPath: exe) ? exe : (Bundle.main.executablePath ?? "parallax")
  }

  /// Runs `mpirun -np n … parallax ARGS` (or `launcher -np n … ARGS`) and waits.
  func mpirun(ranks n: Int, launcher: String?, bindTo: String, _ tail: [String]) throws {
    var command: [String]
    if let launcher {
      command = launcher.split(separator: " ").map(String.init)
      if !command[0].contains("/") { command[0] = Self.which(command[0]) }
    } else {
      command = [Self.which("mpirun")]
    }
    var args = Array(command.dropFirst()) + ["-np", "\(n)", "--bind-to", bindTo]
    if launcher == nil && n > 1 { args += ["--oversubscribe"] }
    if let hostfile, launcher == nil { args += ["--hostfile", hostfile] }
    args += [Self.me] + tail
    FileHandle.standardError.write(Data("scale: \(command[0]) \(args.joined(separator: " "))\n".utf8))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: command[0])
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    if getuid() == 0 {
      env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
      env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    }
    p.environment = env
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw ValidationError("\(command[0]) -np \(n) failed (status \(p.terminationStatus))") }
  }

  /// A timed pretraining run with a timeline in `dir`.
  func pretrainRun(ranks n: Int, bucketMB: Double, dir: String, launcher: String?, bindTo: String? = nil) throws {
    try? FileManager.default.removeItem(atPath: dir)
    let timeline = dir + "/timeline.json"
    let args = [
      "pretrain", "--model", model, "--global-batch", "\(n * batchPerRank)", "--max-steps",
      "\(steps + warmup)", "--warmup-steps", "1", "--threads", "\(threads)", "--run-dir", dir,
      "--timeline", timeline, "--bucket-mb", "\(bucketMB)", "--sync-progress", syncProgress,
      "--data-dir", dataDir, "--log-every", "1000", "--precision", precision.rawValue,
    ]
    try mpirun(ranks: n, launcher: launcher, bindTo: bindTo ?? self.bindTo, args)
  }

  /// Per-step figures from a timeline: the slowest rank's step, the union of that rank's
  /// bucket intervals, its exposed wait; medians over the timed steps.
  func parse(timeline path: String, ranks n: Int, mode: String) throws -> Measure {
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
    guard let events = (json as? [String: Any])?["traceEvents"] as? [[String: Any]] else {
      throw ValidationError("\(path): no traceEvents")
    }
    // (rank, step) → (step µs, exposed µs, bucket intervals)
    var stepDur: [Int: [Int: Double]] = [:]
    var exposed: [Int: [Int: Double]] = [:]
    var buckets: [Int: [Int: [(Double, Double)]]] = [:]
    for e in events where (e["ph"] as? String) == "X" {
      guard let pid = e["pid"] as? Int, let args = e["args"] as? [String: Any],
        let step = (args["step"] as? NSNumber)?.intValue, step > warmup,
        let ts = (e["ts"] as? NSNumber)?.doubleValue, let dur = (e["dur"] as? NSNumber)?.doubleValue
      else { continue }
      switch e["cat"] as? String {
      case "step":
        stepDur[step, default: [:]][pid] = dur
        exposed[step, default: [:]][pid] = (args["exposed_ms"] as? NSNumber)?.doubleValue ?? 0
      case "allreduce":
        buckets[step, default: [:]][pid, default: []].append((ts, ts + dur))
      default: break
      }
    }
    var steps: [Double] = []
    var comms: [Double] = []
    var exposeds: [Double] = []
    for (step, perRank) in stepDur {
      guard let (slowest, dur) = perRank.max(by: { $0.value < $1.value }) else { continue }
      steps.append(dur / 1e6)
      exposeds.append((exposed[step]?[slowest] ?? 0) / 1e3)
      comms.append(Self.union(buckets[step]?[slowest] ?? []) / 1e6)
    }
    guard !steps.isEmpty else { throw ValidationError("\(path): no timed steps") }
    func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
    let step = median(steps)
    return Measure(
      ranks: n, mode: mode, stepSeconds: step, samplesPerSecond: Double(n * batchPerRank) / step,
      commSeconds: median(comms), exposedSeconds: median(exposeds))
  }

  static func union(_ intervals: [(Double, Double)]) -> Double { intervalUnion(intervals.map { (start: $0.0, end: $0.1) }) }


  static func which(_ name: String) -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
      let p = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return "/usr/bin/\(name)"
  }

  func write(_ results: [Measure]) throws {
    let base = results.first { $0.ranks == 1 }?.samplesPerSecond ?? results.first?.samplesPerSecond ?? 1
    let baseRanks = results.first { $0.ranks == 1 }?.ranks ?? results.first?.ranks ?? 1
    func efficiency(_ m: Measure) -> Double { m.samplesPerSecond / (base * Double(m.ranks) / Double(baseRanks)) }
    func hidden(_ m: Measure) -> Double { m.commSeconds > 0 ? max(0, 1 - m.exposedSeconds / m.commSeconds) : 0 }
    func hiddenVsFused(_ m: Measure) -> Double? {
      guard m.mode == "bucketed", let f = results.first(where: { $0.ranks == m.ranks && $0.mode == "fused" }),
        f.exposedSeconds > 0
      else { return nil }
      return max(0, 1 - m.exposedSeconds / f.exposedSeconds)
    }
    var csv = "model,ranks,mode,batch_per_rank,step_ms,samples_per_s,efficiency,comm_ms,exposed_ms,comm_share,exposed_share,hidden_share,hidden_vs_fused\n"
    var md = "| model | ranks | sync | step (ms) | samples/s | efficiency | comm (ms) | exposed (ms) | comm share | hidden | hidden vs fused |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    for m in results {
      let hv = hiddenVsFused(m)
      csv += String(
        format: "%@,%d,%@,%d,%.2f,%.2f,%.4f,%.3f,%.3f,%.4f,%.4f,%.4f,%@\n", model, m.ranks, m.mode, batchPerRank,
        m.stepSeconds * 1e3, m.samplesPerSecond, efficiency(m), m.commSeconds * 1e3, m.exposedSeconds * 1e3,
        m.commSeconds / m.stepSeconds, m.exposedSeconds / m.stepSeconds, hidden(m), hv.map { String(format: "%.4f", $0) } ?? "")
      md += String(
        format: "| %@ | %d | %@ | %.1f | %.1f | %.1f%% | %.2f | %.2f | %.1f%% | %@ | %@ |\n", model, m.ranks, m.mode,
        m.stepSeconds * 1e3, m.samplesPerSecond, efficiency(m) * 100, m.commSeconds * 1e3, m.exposedSeconds * 1e3,
        m.commSeconds / m.stepSeconds * 100, m.ranks > 1 ? String(format: "%.1f%%", hidden(m) * 100) : "–",
        hv.map { String(format: "%.1f%%", $0 * 100) } ?? "–")
    }
    try AtomicFile.write(Data(csv.utf8), to: out + "/scale-\(model).csv")
    try AtomicFile.write(Data(md.utf8), to: out + "/scale-\(model).md")
    try AtomicFile.write(Data(svg(results, efficiency: efficiency, hidden: hidden).utf8), to: out + "/scale-\(model).svg")
    print(md)
    print("wrote \(out)/scale-\(model).{csv,md,svg}")
  }

  /// Two panels: samples/s against ideal linear scaling; efficiency, communication share
  /// and hidden share in percent. Each panel has its own legend beside it (the canvas
  /// grows to fit it); the rank axis is logarithmic (base 2) once the counts span 8× or more.
  func svg(_ all: [Measure], efficiency: (Measure) -> Double, hidden: (Measure) -> Double) -> String {
    let rs = all.filter { $0.mode != "fused" }.sorted { $0.ranks < $1.ranks }
    let base = rs.first.map { $0.samplesPerSecond / Double($0.ranks) } ?? 1
    let ranks = rs.map { Double($0.ranks) }
    let logAxis = (ranks.last ?? 1) / max(ranks.first ?? 1, 1) >= 8
    var throughput = SVGPlot(
      title: "\(model): samples/s vs ideal", xLabel: "ranks", yLabel: "samples/s",
      series: [
        SVGPlot.Series("ideal (linear)", rs.map { (x: Double($0.ranks), y: base * Double($0.ranks)) }, color: "gray", dashed: true),
        SVGPlot.Series("measured", rs.map { (x: Double($0.ranks), y: $0.samplesPerSecond) }, color: "#1f77b4", markers: true),
      ])
    var shares = SVGPlot(
      title: "\(model): efficiency and communication", xLabel: "ranks", yLabel: "%",
      series: [
        SVGPlot.Series("efficiency", rs.map { (x: Double($0.ranks), y: efficiency($0) * 100) }, color: "#1f77b4", markers: true),
        SVGPlot.Series("comm share of step", rs.map { (x: Double($0.ranks), y: $0.commSeconds / $0.stepSeconds * 100) }, color: "#d62728", markers: true),
        SVGPlot.Series("comm hidden behind backward", rs.filter { $0.ranks > 1 }.map { (x: Double($0.ranks), y: hidden($0) * 100) }, color: "#2ca02c", markers: true),
      ])
    throughput.yFromZero = true
    shares.yRange = 0...100
    for i in 0..<2 {
      var p = i == 0 ? throughput : shares
      p.xScale = logAxis ? .log2 : .linear
      p.xTicks = ranks
      p.plotWidth = 340
      if i == 0 { throughput = p } else { shares = p }
    }
    return SVGPlot.row([throughput, shares])
  }
}
