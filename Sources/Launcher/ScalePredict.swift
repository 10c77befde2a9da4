import ArgumentParser
import Foundation
import Model
import Train

/// `parallax scale --predict`: fit the transport, profile the step, predict, validate.
///
/// 1. **Transport**: `bench allreduce` at each `--ranks` count through `--launcher` (e.g. on
///    shaped namespace hosts); α and β of the ring model are fitted per rank count, in two
///    size regimes where the sweep shows an algorithm switch (`Transport.fit`,
///    `LinkModel.fitPiecewise`, relative least squares). Validation at a swept rank count
///    uses its own fit; predictions past the sweep extrapolate the largest one.
/// 2. **Compute**: the same pretraining with a timeline at 1 rank and at each `--ranks`
///    count (oversubscribed cores are then in the baseline) — on the same hosts with the
///    shaping removed (`--unshape-cmd`), or on this machine's shared memory: per step the
///    slowest rank's time minus its exposed wait, backward's duration, and each bucket's
///    size and issue time as a fraction of backward. (`bench step` reports the same compute
///    split but neither the backward share nor the buckets' timing.)
/// 3. **Validation** (`--validate`), right after each rank count's profile: the pretraining
///    on the (re-shaped, `--shape-cmd`) transport, bucketed and (with `--compare-fused`)
///    fused, against the prediction from 1 + 2.
/// 4. **Prediction**: the 1-rank profile (each node has its own cores) on `--nodes` nodes
///    for the fitted link and for `--link-speeds` at the fitted (or `--alpha-us`) latency,
///    with and without overlap → CSV, Markdown and SVG in `--out`.
extension Scale {
  struct Profiled {
    var ranks: Int
    var step: Double
    var profile: StepProfile
  }

  var nodeList: [Int] { nodes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
  var speedList: [Double] { linkSpeeds.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) } }
  var label: String { link.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "-" }.reduce("") { $0 + String($1) } }

  func runPredict() throws {
    let multi = rankList.filter { $0 > 1 }
    guard !multi.isEmpty else { throw ValidationError("--predict needs --ranks with at least one count > 1") }
    // 1. Transport sweep.
    try shell(shapeCmd)
    // Blocking all-reduces (sync BN, the loss) and nonblocking ones (gradient buckets) are
    // swept and fitted apart: Open MPI implements them in different components.
    var samples: [LinkModel.Sample] = []
    var bucketSamples: [LinkModel.Sample] = []
    for p in multi {
      for nonblocking in [false, true] {
        let csv = out + "/allreduce-\(nonblocking ? "nb-" : "")\(label)-\(p).csv"
        if !(reuseSweep && FileManager.default.fileExists(atPath: csv)) {
          try mpirun(
            ranks: p, launcher: launcher, bindTo: "none",
            ["bench", "allreduce", "--min-bytes", "\(sweepMinBytes)", "--max-bytes", "\(sweepMaxBytes)", "--rounds", "3",
             "--budget-bytes", "\(2 << 20)", "--per-octave", "\(sweepPerOctave)", "--csv", csv]
              + (nonblocking ? ["--nonblocking"] : []))
        }
        if nonblocking { bucketSamples += try Self.readSweep(csv, ranks: p) } else { samples += try Self.readSweep(csv, ranks: p) }
      }
    }
    let (transport, rmsByRanks) = Transport.fit(samples)
    let (bucketTransport, bucketRms) = Transport.fit(bucketSamples)
    var fitSummary = ""
    for (name, t, rms) in [("blocking", transport, rmsByRanks), ("nonblocking", bucketTransport, bucketRms)] {
      for p in t.fits.keys.sorted() {
        let line = String(
          format: "transport %@, %@, %d ranks: %@ (rms relative error %.1f%%)", link, name, p, t.fits[p]!.description,
          (rms[p] ?? 0) * 100)
        say(line)
        fitSummary += line + "\n"
      }
    }
    let fitted = transport.largest
    let fittedBuckets = bucketTransport.largest
    var sweepTable = "| all-reduce | ranks | bytes | measured µs | model µs | error |\n|---|---:|---:|---:|---:|---:|\n"
    for (name, t, ss) in [("blocking", transport, samples), ("nonblocking", bucketTransport, bucketSamples)] {
      for s in ss {
        let m = t.link(ranks: s.ranks).allReduce(bytes: s.bytes, ranks: s.ranks)
        sweepTable += String(
          format: "| %@ | %d | %.0f | %.1f | %.1f | %+.1f%% |\n", name, s.ranks, s.bytes, s.seconds * 1e6, m * 1e6,
          (m / s.seconds - 1) * 100)
      }
    }

    // 2 + 3. Per rank count, the compute profile (unshaped hosts, or shared memory) right
    // before the validation runs on the shaped transport, so both see the same load.
    var profiles: [Int: Profiled] = [:]
    var md = "| link | ranks | sync | measured step (ms) | predicted (ms) | error | predicted compute / collectives / exposed (ms) |\n|---|---:|---|---:|---:|---:|---|\n"
    var csv = "link,ranks,mode,measured_step_ms,predicted_step_ms,error,compute_ms,collectives_ms,gradient_comm_ms,exposed_ms,alpha_us,beta_s_per_byte\n"
    for p in [1] + multi {
      let dir = out + "/compute-\(model)-\(p)"
      let onHosts = unshapeCmd != nil && launcher != nil && p > 1
      if onHosts { try shell(unshapeCmd) }
      try pretrainRun(ranks: p, bucketMB: bucketMB, dir: dir, launcher: onHosts ? launcher : nil, bindTo: "none")
      let q = try profile(timeline: dir + "/timeline.json", ranks: p, runDir: dir)
      profiles[p] = q
      say(String(format: "compute at %d rank(s) (%@): step %.1f ms, compute %.1f ms, backward %.1f ms, %d bucket(s), %.0f gradient bytes", p, onHosts ? "unshaped hosts" : "shared memory", q.step * 1e3, q.profile.compute * 1e3, q.profile.backward * 1e3, q.profile.buckets.count, q.profile.gradientBytes))
      guard validateOnTransport, p > 1 else { continue }
      try shell(shapeCmd)
      for (mode, mb) in [("bucketed", bucketMB)] + (compareFused && bucketMB > 0 ? [("fused", 0.0)] : []) {
        let vdir = out + "/validate-\(label)-\(model)-\(p)-\(mode)"
        try pretrainRun(ranks: p, bucketMB: mb, dir: vdir, launcher: launcher, bindTo: "none")
        let measured = try parse(timeline: vdir + "/timeline.json", ranks: p, mode: mode)
        var prof = q.profile
        if mode == "fused" { prof.buckets = [StepProfile.Bucket(bytes: prof.gradientBytes, ready: 1)] }
        let pred = ScalingModel.predict(
          prof, link: transport.link(ranks: p), bucketLink: bucketTransport.link(ranks: p), ranks: p,
          overlap: mode == "bucketed")
        let err = pred.step / measured.stepSeconds - 1
        let row = String(
          format: "| %@ | %d | %@ | %.1f | %.1f | %+.1f%% | %.1f / %.1f / %.1f |\n", link, p, mode, measured.stepSeconds * 1e3,
          pred.step * 1e3, err * 100, pred.compute * 1e3, pred.collectives * 1e3, pred.exposed * 1e3)
        say(row.trimmingCharacters(in: .newlines))
        md += row
        csv += String(
          format: "%@,%d,%@,%.2f,%.2f,%.4f,%.2f,%.2f,%.2f,%.2f,%.2f,%.6g\n", link, p, mode, measured.stepSeconds * 1e3, pred.step * 1e3, err,
          pred.compute * 1e3, pred.collectives * 1e3, pred.gradientComm * 1e3, pred.exposed * 1e3,
          bucketTransport.link(ranks: p).coefficients(bytes: prof.gradientBytes).alpha * 1e6,
          bucketTransport.link(ranks: p).coefficients(bytes: prof.gradientBytes).beta)
      }
    }
    let bucketsTemplate = profiles[multi[0]]!.profile.buckets
    if validateOnTransport {
      try AtomicFile.write(Data(csv.utf8), to: out + "/validation-\(label).csv")
      try AtomicFile.write(Data(md.utf8), to: out + "/validation-\(label).md")
      print("predicted vs measured on \(link) (compute profiled at the same rank count, α–β from the sweep):")
      print(md)
    }

    // 4. Prediction from the 1-rank profile.
    var one = profiles[1]!.profile
    one.buckets = bucketsTemplate
    let alpha = alphaUs.map { $0 * 1e-6 } ?? fitted.alpha
    // (name, link for the blocking collectives, link for the gradient buckets)
    var links: [(String, LinkModel, LinkModel)] = [("fitted \(link)", fitted, fittedBuckets)]
    links += speedList.map {
      let l = LinkModel(gbitPerSecond: $0, alpha: alpha)
      return (String(format: "%g Gbit/s", $0), l, l)
    }
    var pcsv = "link,algorithm,alpha_us,gbit_s,nodes,overlap,step_ms,samples_per_s,efficiency,compute_ms,collectives_ms,gradient_comm_ms,exposed_ms\n"
    var pmd = "| link | nodes | step (ms), overlap | samples/s | efficiency | step (ms), fused | efficiency, fused | efficiency, overlap, log₂ latency |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    var series: [(String, Bool, [(Int, Double)])] = []
    for (name, l, lb) in links {
      var on: [(Int, Double)] = []
      var off: [(Int, Double)] = []
      for n in nodeList {
        let a = ScalingModel.predict(one, link: l, bucketLink: lb, ranks: n, overlap: true)
        let b = ScalingModel.predict(one, link: l, bucketLink: lb, ranks: n, overlap: false)
        var (lg, lgb) = (l, lb)
        lg.algorithm = .logarithmic
        lgb.algorithm = .logarithmic
        let c = ScalingModel.predict(one, link: lg, bucketLink: lgb, ranks: n, overlap: true)
        let d = ScalingModel.predict(one, link: lg, bucketLink: lgb, ranks: n, overlap: false)
        for (alg, ov, x) in [("ring", true, a), ("ring", false, b), ("logarithmic", true, c), ("logarithmic", false, d)] {
          pcsv += String(
            format: "%@,%@,%.2f,%.4g,%d,%@,%.3f,%.2f,%.4f,%.3f,%.3f,%.3f,%.3f\n", name, alg, l.alpha * 1e6, l.gbitPerSecond, n, ov ? "yes" : "no",
            x.step * 1e3, Double(n * batchPerRank) / x.step, one.compute / x.step, x.compute * 1e3, x.collectives * 1e3,
            x.gradientComm * 1e3, x.exposed * 1e3)
        }
        pmd += String(
          format: "| %@ | %d | %.1f | %.0f | %.1f%% | %.1f | %.1f%% | %.1f%% |\n", name, n, a.step * 1e3, Double(n * batchPerRank) / a.step,
          one.compute / a.step * 100, b.step * 1e3, one.compute / b.step * 100, one.compute / c.step * 100)
        on.append((n, one.compute / a.step))
        off.append((n, one.compute / b.step))
      }
      series.append((name, true, on))
      series.append((name, false, off))
    }
    let stem = out + "/predict-\(model)-\(label)"
    let header = String(
      format: "%@, %d samples/rank, bucket cap %g MiB (%d buckets, %.0f KB of gradients); compute %.1f ms/step (backward %.1f ms) from 1 rank; fitted at %d ranks: %@ (gradient buckets: %@); link speeds at α = %.1f µs. Ring collectives (2(p−1) latencies per all-reduce) except the last column (2⌈log₂p⌉).\n\n",
      model, batchPerRank, bucketMB, one.buckets.count, one.gradientBytes / 1e3, one.compute * 1e3, one.backward * 1e3,
      transport.fits.keys.max()!, fitted.description, fittedBuckets.description, alpha * 1e6)
    try AtomicFile.write(Data(pcsv.utf8), to: stem + ".csv")
    try AtomicFile.write(Data((header + pmd).utf8), to: stem + ".md")
    try AtomicFile.write(Data(predictionSVG(series).utf8), to: stem + ".svg")
    try AtomicFile.write(Data(("α–β fits per rank count, \(link):\n\n" + fitSummary + "\n" + sweepTable).utf8), to: out + "/fit-\(label).md")
    print(header + pmd)
    print("wrote \(stem).{csv,md,svg}, \(out)/fit-\(label).md\(validateOnTransport ? ", \(out)/validation-\(label).{csv,md}" : "")")
  }

  /// Runs a shell command line (shaping); nil does nothing.
  func shell(_ command: String?) throws {
    guard let command else { return }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw ValidationError("'\(command)' failed (status \(p.terminationStatus))") }
  }

  func say(_ s: String) { FileHandle.standardError.write(Data(("scale: " + s + "\n").utf8)) }

  /// (ranks, bytes, seconds) from a `bench allreduce --csv` file (raw MPI_Allreduce column).
  static func readSweep(_ path: String, ranks: Int) throws -> [LinkModel.Sample] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    var lines = text.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
    guard let head = lines.first, let b = head.firstIndex(of: "bytes"), let r = head.firstIndex(of: "raw_us") else {
      throw ValidationError("\(path): not a bench allreduce CSV")
    }
    lines.removeFirst()
    return lines.compactMap { row in
      guard row.count > max(b, r), let bytes = Double(row[b]), let us = Double(row[r]) else { return nil }
      return LinkModel.Sample(ranks: ranks, bytes: bytes, seconds: us * 1e-6)
    }
  }

  /// The step profile of the slowest rank per timed step (medians over steps).
  func profile(timeline path: String, ranks n: Int, runDir: String) throws -> Profiled {
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
    guard let events = (json as? [String: Any])?["traceEvents"] as? [[String: Any]] else {
      throw ValidationError("\(path): no traceEvents")
    }
    struct Span { var ts: Double; var end: Double }
    var stepSpans: [Int: [Int: (Span, Double)]] = [:]  // step → pid → (span, exposed s)
    var backward: [Int: [Span]] = [:]  // pid → spans
    var buckets: [Int: [Int: [(Int, Double, Double)]]] = [:]  // step → pid → (index, ts, bytes)
    for e in events where (e["ph"] as? String) == "X" {
      guard let pid = e["pid"] as? Int, let ts = (e["ts"] as? NSNumber)?.doubleValue,
        let dur = (e["dur"] as? NSNumber)?.doubleValue
      else { continue }
      let args = e["args"] as? [String: Any] ?? [:]
      let step = (args["step"] as? NSNumber)?.intValue ?? -1
      switch e["cat"] as? String {
      case "step" where step > warmup:
        stepSpans[step, default: [:]][pid] = (Span(ts: ts, end: ts + dur), ((args["exposed_ms"] as? NSNumber)?.doubleValue ?? 0) / 1e3)
      case "backward":
        backward[pid, default: []].append(Span(ts: ts, end: ts + dur))
      case "allreduce" where step > warmup:
        let idx = (args["bucket"] as? NSNumber)?.intValue ?? 0
        let bytes = (args["bytes"] as? NSNumber)?.doubleValue ?? 0
        buckets[step, default: [:]][pid, default: []].append((idx, ts, bytes))
      default: break
      }
    }
    func median(_ x: [Double]) -> Double { x.isEmpty ? 0 : x.sorted()[x.count / 2] }
    var steps: [Double] = []
    var computes: [Double] = []
    var backwards: [Double] = []
    var readies: [Int: [Double]] = [:]
    var sizes: [Int: Double] = [:]
    for (step, perRank) in stepSpans {
      guard let (pid, (span, exposed)) = perRank.max(by: { ($0.value.0.end - $0.value.0.ts) < ($1.value.0.end - $1.value.0.ts) }) else { continue }
      let dur = (span.end - span.ts) / 1e6
      steps.append(dur)
      computes.append(dur - exposed)
      let bw = (backward[pid] ?? []).filter { $0.ts >= span.ts && $0.end <= span.end }
      guard let b0 = bw.map(\.ts).min(), let b1 = bw.map(\.end).max(), b1 > b0 else { continue }
      backwards.append((b1 - b0) / 1e6)
      for (idx, ts, bytes) in buckets[step]?[pid] ?? [] {
        readies[idx, default: []].append(min(1, max(0, (ts - b0) / (b1 - b0))))
        sizes[idx] = bytes
      }
    }
    guard !steps.isEmpty else { throw ValidationError("\(path): no timed steps") }
    let bucketList = sizes.keys.sorted().map { StepProfile.Bucket(bytes: sizes[$0]!, ready: median(readies[$0]!)) }
    // Sync BN layers (their running means) from the run's final checkpoint.
    var channels: [Int] = []
    if let st = try? SafeTensors.read(URL(fileURLWithPath: runDir + "/latest/model.safetensors")) {
      channels = st.entries.filter { $0.key.hasSuffix(".running_mean") }.sorted { $0.key < $1.key }.map { $0.value.values.count }
    }
    let collectives = ScalingModel.simclrCollectives(
      bnChannels: channels, rowsPerRank: 2 * batchPerRank, dim: PretrainConfig().projectionDim)
    return Profiled(
      ranks: n, step: median(steps),
      profile: StepProfile(compute: median(computes), backward: median(backwards), buckets: bucketList, collectives: collectives))
  }

  /// Efficiency against nodes (log₂ axis), one colour per link, solid with overlap, dashed
  /// fused; the legend beside the plot (the canvas grows to fit it).
  func predictionSVG(_ series: [(String, Bool, [(Int, Double)])]) -> String {
    var names: [String] = []
    for (name, _, _) in series where !names.contains(name) { names.append(name) }
    let lines = series.map { name, overlap, pts in
      SVGPlot.Series(
        "\(name), \(overlap ? "overlapped" : "fused")", pts.map { (x: Double($0.0), y: $0.1 * 100) },
        color: SVGPlot.palette[(names.firstIndex(of: name) ?? 0) % SVGPlot.palette.count], dashed: !overlap)
    }
    var p = SVGPlot(
      title: "\(model), \(batchPerRank) samples/rank, \(bucketMB) MiB buckets: predicted weak-scaling efficiency",
      xLabel: "nodes (1 rank each)", yLabel: "efficiency (%)", series: lines)
    p.xScale = .log2
    p.xTicks = nodeList.sorted().map(Double.init)
    p.yRange = 0...100
    p.notes = ["solid: buckets overlapped with backward", "dashed: one fused all-reduce after backward"]
    return p.render()
  }
}
