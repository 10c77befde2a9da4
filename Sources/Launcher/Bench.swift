import ArgumentParser
import Dist
import Foundation
import Train

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks that print figures (nothing here asserts).", subcommands: [Step.self, BenchAllreduce.self])

  struct Step: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Time whole SimCLR training steps (data, forward, backward, allreduce, optimizer).")
    @Option(help: "Encoder: conv4 or resnet18.") var model: String = "conv4"
    @Option(help: "Global batch (samples; each passes as two views).") var batch: Int = 256
    @Option(help: "Timed steps.") var steps: Int = 10
    @Option(help: "Untimed warm-up steps.") var warmup: Int = 2
    @Option(help: "OpenBLAS threads per rank.") var threads: Int = 1
    @Option(help: "Directory of the Fashion-MNIST IDX files.") var dataDir: String = "/usr/share/datasets/fashion-mnist"

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
        c.maxSteps = steps + warmup
        c.runDir = NSTemporaryDirectory() + "parallax-bench-\(getpid())"
        let trainer = try Pretrainer(config: c, comm: comm, console: console)
        var times: [Double] = []
        var comms: [Double] = []
        for i in 0..<(steps + warmup) {
          let t0 = now()
          let (_, _, comm) = try trainer.benchStep()
          if i >= warmup {
            times.append(now() - t0)
            comms.append(comm)
          }
        }
        times.sort()
        let median = times[times.count / 2]
        let rss = peakRSSMiB()
        console.say(
          String(
            format: "bench step %@ batch %d · %d rank(s) × %d thread(s): median %.1f ms/step (min %.1f, max %.1f), %.1f samples/s, allreduce %.2f ms, peak RSS %.0f MiB",
            model, batch, comm.size, threads, median * 1000, times.first! * 1000, times.last! * 1000,
            Double(batch) / median, comms.sorted()[comms.count / 2] * 1000, rss))
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
