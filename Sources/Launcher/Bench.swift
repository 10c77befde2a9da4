import ArgumentParser
import Dist
import Foundation
import Model
import Train

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks that print figures (nothing here asserts).",
    subcommands: [Step.self, BenchAllreduce.self, GemmShapes.self, BenchData.self])

  struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Time whole SimCLR training steps (data, forward, backward, allreduce, optimizer).")
    @Option(help: "Encoder.") var model: EncoderKind = .conv4
    @Option(help: "Global batch (samples; each passes as two views).") var batch: Int = 256
    @Option(help: "Timed steps.") var steps: Int = 10
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
    @Option(help: "OpenBLAS threads per rank.") var threads: Int = 1
    @Option(help: "Directory of the Fashion-MNIST IDX files.") var dataDir: String =
      "/usr/share/datasets/fashion-mnist"
    @Option(help: "Optimizer: sgd (as bench/pytorch_step.py) or lars.") var optimizer: OptimizerKind = .sgd
    @Option(help: "GEMM operand precision of the convolutions and linear layers: fp32 or bf16.")
    var precision: GemmPrecision = .fp32

    func validate() throws {
      guard steps > 0, warmup >= 0, batch > 0, threads > 0 else {
        throw ValidationError("--steps, --batch and --threads must be positive, --warmup ≥ 0")
      }
    }

    func run() throws {
      try withWorld { comm, console in
        Runtime.configureThreads(requested: threads, localSize: comm.localSize)
        var c = PretrainConfig()
        c.model = model
        c.globalBatch = batch
        c.dataDir = dataDir
        c.optimizer = optimizer
        c.precision = precision
        c.maxSteps = steps + warmup
        c.runDir = NSTemporaryDirectory() + "parallax-bench-\(getpid())"
        let trainer = try Pretrainer(config: c, comm: comm, console: console)
        var timings: [StepTiming] = []
        for i in 0..<(steps + warmup) {
          if i == warmup { Gemm.resetCounters() }
          let t = try trainer.benchStepTimed()
          if i >= warmup { timings.append(t) }
        }
        let gemm = Gemm.counters
        func median(_ f: (StepTiming) -> Double) -> Double {
          let v = timings.map(f).sorted()
          return v[v.count / 2]
        }
        let totals = timings.map(\.total).sorted()
        let step = median(\.total)
        let compute = median(\.compute)
        let rss = peakRSSMiB()
        console.say(
          String(
            format:
              "bench step %@ batch %d · %d rank(s) × %d thread(s): median %.1f ms/step (min %.1f, max %.1f), %.1f samples/s, allreduce %.2f ms, peak RSS %.0f MiB",
            model.rawValue, batch, comm.size, threads, step * 1000, totals.first! * 1000,
            totals.last! * 1000,
            Double(batch) / step, median(\.communication) * 1000, rss))
        let flopsNote: String
        if let f = trainer.stepFLOPs {
          // Every rank does the same work; the figure is per rank.
          flopsNote = String(
            format:
              "%.2f GFLOP/step counted (conv+linear, fwd+bwd = 3× fwd) per rank: %.1f GFLOP/s over compute, %.1f over the whole step",
            Double(f) / 1e9, Double(f) / compute / 1e9, Double(f) / step / 1e9)
        } else {
          flopsNote = "FLOPs not counted for this model"
        }
        console.say(
          String(
            format:
              "  time split (medians): data+augment %.1f ms, forward+backward %.1f ms, allreduce %.2f ms, optimizer %.1f ms",
            median(\.data) * 1000, compute * 1000, median(\.communication) * 1000,
            median(\.optimizer) * 1000))
        console.say("  " + flopsNote)
        console.say("  " + Peak.note(
          precision: precision, threads: threads, gemmFLOPs: gemm.flops / Double(steps),
          gemmSeconds: gemm.seconds / Double(steps), stepFLOPs: trainer.stepFLOPs.map(Double.init),
          stepSeconds: step))
        let m = trainer.memoryEstimate
        let mib = 1.0 / Double(1 << 20)
        let need = Double(m.parameters + m.optimizer + m.activations) * mib
        console.say(
          String(
            format:
              "  memory estimate %.0f MiB (params+grads+BN buffers %.1f, optimizer %.1f, activations+saved+scratch %.0f) vs peak RSS %.0f MiB (%.2f×)",
            need, Double(m.parameters) * mib, Double(m.optimizer) * mib,
            Double(m.activations) * mib,
            rss, rss / need))
      }
    }
  }
}

/// Peak arithmetic rates of one core, to put achieved GFLOP/s in proportion. Per cycle:
/// fp32 AVX-512 two 16-lane FMAs (64 FLOP), on CPUs without it AVX2's two 8-lane FMAs (32);
/// AVX-512-BF16 two `vdpbf16ps` of 16 lanes × 2 products (128 FLOP); AMX-BF16 one 16×16×32
/// `tdpbf16ps` every 16 cycles (1024 FLOP, Intel's figure for Sapphire Rapids). The clock is
/// /proc/cpuinfo's "cpu MHz" (the nominal clock a VM reports, not the turbo), so a share can
/// exceed what the clock suggests.
enum Peak {
  /// /proc/cpuinfo's lines (none where it cannot be read).
  static let cpuinfo: [Substring] =
    ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").split(separator: "\n")

  static var gigahertz: Double {
    for line in cpuinfo where line.hasPrefix("cpu MHz") {
      if let v = line.split(separator: ":").last.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) {
        return v / 1000
      }
    }
    return 0
  }

  /// Whether /proc/cpuinfo lists AVX2 and FMA.
  static var hasAVX2FMA: Bool {
    guard let flags = cpuinfo.first(where: { $0.hasPrefix("flags") }) else { return false }
    let set = Set(flags.split(separator: " "))
    return set.contains("avx2") && set.contains("fma")
  }

  /// FLOP per cycle of the GEMM path `precision` runs here, and that path's name.
  static func perCycle(_ precision: GemmPrecision) -> (Double, String) {
    switch precision {
    case .fp32:
      // Without AVX-512 the fp32 GEMM is OpenBLAS's: two 8-lane FMAs per cycle with AVX2.
      if Gemm.builtinAvailable { return (64, "fp32 AVX-512") }
      return hasAVX2FMA ? (32, "fp32 AVX2 (OpenBLAS)") : (8, "fp32 SSE (OpenBLAS)")
    case .bf16:
      switch Gemm.bf16PathName {
      case "amx": return (1024, "AMX-BF16")
      case "avx512-bf16": return (128, "AVX-512-BF16")
      default: return (64, "portable bf16 (fp32 FMA)")
      }
    }
  }

  /// "GEMMs …: x GFLOP/s = p % of <path> peak, q % of AMX peak; whole step …" for one rank.
  static func note(
    precision: GemmPrecision, threads: Int, gemmFLOPs: Double, gemmSeconds: Double,
    stepFLOPs: Double?, stepSeconds: Double
  ) -> String {
    let ghz = gigahertz
    let (fpc, name) = perCycle(precision)
    let peak = fpc * ghz * Double(threads)
    let amx = 1024 * ghz * Double(threads)
    let rate = gemmSeconds > 0 ? gemmFLOPs / gemmSeconds / 1e9 : 0
    var out = String(
      format:
        "GEMMs (%@ operands, kernels %@): %.2f GFLOP in %.1f ms per step, %.1f GFLOP/s = %.1f%% of the %@ peak (%.0f FLOP/cycle × %.2f GHz × %d)",
      precision.rawValue, precision == .bf16 ? Gemm.bf16PathName : "fp32", gemmFLOPs / 1e9,
      gemmSeconds * 1000, rate, 100 * rate / peak, name, fpc, ghz, threads)
    let otherThanAMX = fpc != 1024
    if otherThanAMX {
      out += String(
        format: ", %.1f%% of the AMX-BF16 peak (1024 FLOP/cycle%@)", 100 * rate / amx,
        Gemm.bf16SupportedPathName == "amx" ? "" : "; this CPU has no AMX")
    }
    if let f = stepFLOPs {
      let whole = f / stepSeconds / 1e9
      out += String(format: "; whole step %.1f GFLOP/s = %.1f%% of the %@ peak", whole, 100 * whole / peak, name)
      if otherThanAMX { out += String(format: ", %.2f%% of AMX's", 100 * whole / amx) }
    }
    return out
  }
}

/// Times `Gemm.sgemm` alone on the convolution GEMM shapes of conv4/resnet18 (forward
/// `W·col`, weight gradient `dY·colᵀ`, input gradient `Wᵀ·dY`) and prints GFLOP/s.
struct GemmShapes: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gemm", abstract: "GFLOP/s of the built-in sgemm on convolution shapes.")
  @Option(help: "Threads for the built-in kernel.") var threads: Int = 1
  @Option(help: "Repetitions per shape (median reported).") var reps: Int = 5
  @Option(help: "Only shapes whose label contains this.") var filter: String = ""
  @Option(help: "Operand precision: fp32 or bf16 (fp32 accumulation).") var precision: GemmPrecision = .fp32

  func run() throws {
    Gemm.threads = threads
    // (label, transA, transB, M, N, K)
    var shapes: [(String, Bool, Bool, Int, Int, Int)] = []
    // resnet18 at batch 64 (128 views), 28×28: (C_in, C_out, H_out, stride-1 3×3 chunk samples)
    for (c, o, hw) in [(64, 64, 784), (128, 128, 196), (256, 256, 49), (512, 512, 16)] {
      let rows = c * 9
      let cols = max(1, min(128, (1 << 21) / (rows * hw))) * hw
      shapes.append(("r18 \(o) fwd", false, false, o, cols, rows))
      shapes.append(("r18 \(o) dW", false, true, o, rows, cols))
      shapes.append(("r18 \(o) dX", true, false, rows, cols, o))
    }
    for (c, hw) in [(1, 784), (64, 196), (64, 49), (64, 9)] {
      let rows = c * 9
      let cols = max(1, min(512, (1 << 21) / (rows * hw))) * hw
      shapes.append(("c4 \(c) fwd", false, false, 64, cols, rows))
      shapes.append(("c4 \(c) dW", false, true, 64, rows, cols))
      if c > 1 { shapes.append(("c4 \(c) dX", true, false, rows, cols, 64)) }
    }
    shapes.append(("square 1024", false, false, 1024, 1024, 1024))
    for (label, ta, tb, m, n, k) in shapes where filter.isEmpty || label.contains(filter) {
      let a = [Float]((0..<(m * k)).map { Float($0 % 13) * 0.01 })
      let b = [Float]((0..<(k * n)).map { Float($0 % 7) * 0.01 })
      var c = [Float](repeating: 0, count: m * n)
      var times: [Double] = []
      for _ in 0..<(reps + 1) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        a.withUnsafeBufferPointer { ap in
          b.withUnsafeBufferPointer { bp in
            c.withUnsafeMutableBufferPointer { cp in
              Gemm.sgemm(
                transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress!,
                lda: ta ? m : k, b: bp.baseAddress!, ldb: tb ? k : n, beta: 0,
                c: cp.baseAddress!, ldc: n, precision: precision)
            }
          }
        }
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
      }
      let t = times.dropFirst().sorted()[reps / 2]
      print(
        String(
          format: "%-14@ %@%@ M %5d N %5d K %5d: %7.2f ms  %6.1f GFLOP/s",
          label, ta ? "T" : "N", tb ? "T" : "N", m, n, k, t * 1000,
          2.0 * Double(m * n * k) / t / 1e9))
    }
  }
}

/// VmHWM from /proc/self/status, in MiB.
func peakRSSMiB() -> Double {
  guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
  for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
    let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
    return kb / 1024
  }
  return 0
}
