import ArgumentParser
import Dist
import Foundation
import Train

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks that print figures (nothing here asserts).", subcommands: [Step.self, BenchAllreduce.self, BenchData.self])

  struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Time whole SimCLR training steps (data, forward, backward, allreduce, optimizer).")
    @Option(help: "Encoder: conv4 or resnet18.") var model: String = "conv4"
    @Option(help: "Global batch (samples; each passes as two views).") var batch: Int = 256
    @Option(help: "Timed steps.") var steps: Int = 10
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
    @Option(help: "OpenBLAS threads per rank.") var threads: Int = 1
    @Option(help: "Directory of the Fashion-MNIST IDX files.") var dataDir: String = "/usr/share/datasets/fashion-mnist"
    @Option(help: "Optimizer: sgd (as bench/pytorch_step.py) or lars.") var optimizer: String = "sgd"

    func validate() throws {
      guard steps > 0, warmup >= 0, batch > 0, threads > 0 else {
        throw ValidationError("--steps, --batch and --threads must be positive, --warmup ≥ 0")
      }
      guard ["sgd", "lars"].contains(optimizer) else {
        throw ValidationError("--optimizer must be sgd or lars (got \(optimizer))")
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
        c.maxSteps = steps + warmup
        c.runDir = NSTemporaryDirectory() + "parallax-bench-\(getpid())"
        let trainer = try Pretrainer(config: c, comm: comm, console: console)
        var timings: [StepTiming] = []
        for i in 0..<(steps + warmup) {
          let t = try trainer.benchStepTimed()
          if i >= warmup { timings.append(t) }
        }
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
            format: "bench step %@ batch %d · %d rank(s) × %d thread(s): median %.1f ms/step (min %.1f, max %.1f), %.1f samples/s, allreduce %.2f ms, peak RSS %.0f MiB",
            model, batch, comm.size, threads, step * 1000, totals.first! * 1000, totals.last! * 1000,
            Double(batch) / step, median(\.communication) * 1000, rss))
        let flopsNote: String
        if let f = trainer.stepFLOPs {
          // Every rank does the same work; the figure is per rank.
          flopsNote = String(
            format: "%.2f GFLOP/step counted (conv+linear, fwd+bwd = 3× fwd) per rank: %.1f GFLOP/s over compute, %.1f over the whole step",
            Double(f) / 1e9, Double(f) / compute / 1e9, Double(f) / step / 1e9)
        } else {
          flopsNote = "FLOPs not counted for this model"
        }
        console.say(
          String(
            format: "  time split (medians): data+augment %.1f ms, forward+backward %.1f ms, allreduce %.2f ms, optimizer %.1f ms",
            median(\.data) * 1000, compute * 1000, median(\.communication) * 1000,
            median(\.optimizer) * 1000))
        console.say("  " + flopsNote)
        let m = trainer.memoryEstimate
        let mib = 1.0 / Double(1 << 20)
        let need = Double(m.parameters + m.optimizer + m.activations) * mib
        console.say(
          String(
            format: "  memory estimate %.0f MiB (params+grads+BN buffers %.1f, optimizer %.1f, activations+saved+scratch %.0f) vs peak RSS %.0f MiB (%.2f×)",
            need, Double(m.parameters) * mib, Double(m.optimizer) * mib, Double(m.activations) * mib,
            rss, rss / need))
      }
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
