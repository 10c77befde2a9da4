import Foundation
import Model

/// Progress for logs: unless the progress bar is drawn on the terminal that is also stdout
/// (`Console.printsStatusLines`), rank 0 prints one plain line every `interval` seconds —
/// what a batch job's log (`sbatch`, `… > job.log`) or a pipe shows, where the bar never
/// draws:
///
///     step 120/702 · epoch 1/3 · loss 5.1234 · 1083 samples/s · elapsed 1m02s · ETA 5m01s
///
/// samples/s is the average since the previous line; the ETA extrapolates the run's
/// average step time. The last step always gets a line.
struct StatusLines {
  let console: Console
  /// Seconds between lines (`--log-interval`; 0: every step).
  let interval: Double
  let enabled: Bool
  /// The step this run started from (a resumed run counts its ETA from there).
  let firstStep: Int
  let start: Double
  let epochs: Int
  private var lastTime: Double
  private var lastStep: Int

  init(console: Console, interval: Double, firstStep: Int, epochs: Int, start: Double) {
    self.console = console
    self.interval = interval
    enabled = console.printsStatusLines
    self.firstStep = firstStep
    self.epochs = epochs
    self.start = start
    lastTime = start
    lastStep = firstStep
  }

  /// After step `step` (1-based count of steps done) of `total`; `epoch` is 0-based.
  mutating func step(_ step: Int, of total: Int, epoch: Int, loss: Float, samplesPerStep: Double) {
    guard enabled else { return }
    let t = now()
    guard t - lastTime >= interval || step == total else { return }
    console.line(
      Self.text(
        step: step, total: total, epoch: epoch, epochs: epochs, loss: loss,
        samplesPerSecond: Double(step - lastStep) * samplesPerStep / max(t - lastTime, 1e-9),
        elapsed: t - start, eta: Self.eta(done: step - firstStep, remaining: total - step, elapsed: t - start)))
    lastTime = t
    lastStep = step
  }

  /// Seconds left at the run's average step time so far.
  static func eta(done: Int, remaining: Int, elapsed: Double) -> Double {
    done > 0 ? elapsed / Double(done) * Double(max(remaining, 0)) : 0
  }

  static func text(
    step: Int, total: Int, epoch: Int, epochs: Int, loss: Float, samplesPerSecond: Double, elapsed: Double,
    eta: Double
  ) -> String {
    String(
      format: "step %d/%d · epoch %d/%d · loss %.4f · %.0f samples/s · elapsed %@ · ETA %@", step, total, epoch + 1,
      max(epochs, epoch + 1), loss, samplesPerSecond, Console.duration(elapsed), Console.duration(eta))
  }
}

/// The length of the union of time intervals (overlaps counted once): a step's
/// communication time is the union of its bucket all-reduces.
public func intervalUnion(_ intervals: [(start: Double, end: Double)]) -> Double {
  var total = 0.0
  var end = -Double.infinity
  for (s, e) in intervals.sorted(by: { $0.start < $1.start }) where e > s {
    if s > end {
      total += e - s
      end = e
    } else if e > end {
      total += e - end
      end = e
    }
  }
  return total
}

/// When a method prints its own per-step line (task losses, mAP, balancing weights): on steps
/// that are multiples of `--log-every`, and at most once every `--log-interval` seconds (0:
/// every such step), so a long multi-task run's log gets a line per interval as the progress
/// lines do, not one per step (`log.jsonl` keeps every step's task losses). The first due step
/// always prints. Rank-local: the lines are printed by rank 0 alone, no collective depends on it.
struct MethodLineCadence {
  let every: Int
  let interval: Double
  private var lastTime = -Double.infinity

  init(every: Int, interval: Double) {
    self.every = max(every, 1)
    self.interval = interval
  }

  init(config: PretrainConfig) { self.init(every: config.logEvery, interval: config.logInterval) }

  /// Whether step `step`'s line is printed; marks it printed at `time` when it is.
  mutating func due(step: Int, time: Double = now()) -> Bool {
    guard step % every == 0, time - lastTime >= interval else { return false }
    lastTime = time
    return true
  }
}
