import ArgumentParser
import Dist
import Foundation
import Model
import Train

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks that print figures (nothing here asserts).",
    subcommands: [Step.self, BenchAllreduce.self, GemmShapes.self, BenchData.self, BenchPeak.self])

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
        // Measured first, before the trainer's data loader starts threads of its own.
        let peaks = Peak.measure(for: precision)
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
          stepSeconds: step, peaks: peaks))
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

/// Achieved GFLOP/s in proportion to the measured peak of the unit the GEMMs run on
/// (`PeakUnit`, one thread's loop times the threads), and to AMX's where the CPU has it and the
/// GEMMs do not use it.
enum Peak {
  /// "GEMMs …: x GFLOP/s = p % of the measured <unit> peak (…); whole step …" for one rank.
  static func note(
    precision: GemmPrecision, threads: Int, gemmFLOPs: Double, gemmSeconds: Double,
    stepFLOPs: Double?, stepSeconds: Double, peaks: [PeakUnit: Double]
  ) -> String {
    let rate = gemmSeconds > 0 ? gemmFLOPs / gemmSeconds / 1e9 : 0
    var out = String(
      format: "GEMMs (%@ operands, kernels %@): %.2f GFLOP in %.1f ms per step, %.1f GFLOP/s",
      precision.rawValue, precision == .bf16 ? Gemm.bf16PathName : "fp32", gemmFLOPs / 1e9,
      gemmSeconds * 1000, rate)
    guard let unit = PeakUnit.forGemm(precision), let one = peaks[unit], one > 0 else {
      return out + " (no peak measured for this CPU's GEMM unit)"
    }
    let peak = one * Double(threads)
    out += String(
      format: " = %.1f%% of the measured %@ peak (%.1f GFLOP/s per thread × %d)", 100 * rate / peak,
      unit.name, one, threads)
    let amx = unit != .bf16AMX ? (peaks[.bf16AMX] ?? 0) * Double(threads) : 0
    if amx > 0 { out += String(format: ", %.1f%% of AMX's (%.1f GFLOP/s)", 100 * rate / amx, amx) }
    if let f = stepFLOPs {
      let whole = f / stepSeconds / 1e9
      out += String(format: "; whole step %.1f GFLOP/s = %.1f%% of that peak", whole, 100 * whole / peak)
      if amx > 0 { out += String(format: ", %.2f%% of AMX's", 100 * whole / amx) }
    }
    return out
  }

  /// One thread's peak of the units `note` quotes for `precision`: the GEMMs' and AMX's
  /// (about 0.06 s each, unsupported ones skipped).
  static func measure(for precision: GemmPrecision) -> [PeakUnit: Double] {
    var out: [PeakUnit: Double] = [:]
    for u in [PeakUnit.forGemm(precision), .bf16AMX].compactMap({ $0 }) where u.isSupported && out[u] == nil {
      out[u] = u.measure()
    }
    return out
  }
}

/// `bench peak`: the measured arithmetic peak of one core on each multiply-add unit.
struct BenchPeak: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "peak",
    abstract: "Measure one core's peak GFLOP/s on each multiply-add unit (fp32 FMA, AVX-512-BF16, AMX).")
  @Option(help: "Seconds per unit (three runs, the fastest counts).") var seconds: Double = 0.3

  func validate() throws {
    guard seconds > 0, seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
  }

  func run() throws {
    for u in PeakUnit.allCases {
      if u.isSupported {
        print(String(format: "peak %@: %.1f GFLOP/s (one thread)", u.name, u.measure(seconds: seconds)))
      } else {
        print("peak \(u.name): not supported on this CPU")
      }
    }
    for p in GemmPrecision.allCases {
      print("\(p.rawValue) GEMMs run on: \(PeakUnit.forGemm(p)?.name ?? "none of these units")")
    }
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
