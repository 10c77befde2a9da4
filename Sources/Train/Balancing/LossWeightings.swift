import Foundation
import Model

/// Equal weighting: wₜ = 1, the gradient of the plain total. (`--mtl ew` takes the fused
/// backward instead and never builds this; tests compare the two.)
public final class EqualWeighting: LossWeighting {
  public init() {}
  public func weights(_ input: BalancingInput) throws -> [Float] { Array(repeating: 1, count: input.tasks) }
}

/// Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018), as LibMTL writes it:
///
///     L = Σₜ Lₜ / (2·exp(sₜ)) + sₜ / 2,     sₜ = log σₜ² learned, initially 0,
///
/// so wₜ = exp(−sₜ)/2. After the step's weights are taken, each sₜ makes one gradient step
/// ∂L/∂sₜ = 1/2 − Lₜ·exp(−sₜ)/2 with the step size `--mtl-lr`.
public final class UncertaintyWeighting: LossWeighting {
  /// [T] sₜ = log σₜ².
  public private(set) var logVariance: [Float]
  let learningRate: Float

  public init(tasks: Int, learningRate: Float) {
    logVariance = Array(repeating: 0, count: tasks)
    self.learningRate = learningRate
  }

  public func weights(_ input: BalancingInput) throws -> [Float] {
    let w = logVariance.map { exp(-$0) / 2 }
    for t in 0..<input.tasks {
      logVariance[t] -= learningRate * (0.5 - input.losses[t] * w[t])
    }
    return w
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    [SafeTensors.Entry(name: "mtl.uw.log_variance", shape: [logVariance.count], values: logVariance)]
  }
  public func restore(_ name: String, _ values: [Float]) throws { logVariance = values }
}

/// Dynamic weight average (Liu, Johns & Davison, CVPR 2019): with L̄ₜ(e) the mean loss of
/// task t over epoch e and rₜ = L̄ₜ(e−1)/L̄ₜ(e−2),
///
///     wₜ(e) = T · exp(rₜ/τ) / Σⱼ exp(rⱼ/τ)          (τ = `--dwa-temperature`, 2),
///
/// and wₜ = 1 in the first two epochs. The running sums of the current epoch and the last
/// two epoch means are its state, so a resume in the middle of an epoch continues exactly.
public final class DynamicWeightAverage: LossWeighting {
  let temperature: Float
  /// [T] this epoch's summed losses, and how many steps they sum.
  private(set) var sums: [Float]
  private(set) var steps: Float = 0
  /// [T] the mean losses of the previous epoch and the one before it.
  private(set) var previous: [Float]
  private(set) var beforePrevious: [Float]
  /// Finished epochs seen, and the epoch the sums belong to (−1: none yet).
  private(set) var finished: Float = 0
  private(set) var epoch: Float = -1

  public init(tasks: Int, temperature: Float) {
    self.temperature = temperature
    sums = Array(repeating: 0, count: tasks)
    previous = Array(repeating: 0, count: tasks)
    beforePrevious = Array(repeating: 0, count: tasks)
  }

  public func weights(_ input: BalancingInput) throws -> [Float] {
    let t = input.tasks
    if Float(input.epoch) != epoch {
      if steps > 0 {
        beforePrevious = previous
        previous = sums.map { $0 / steps }
        finished += 1
      }
      sums = Array(repeating: 0, count: t)
      steps = 0
      epoch = Float(input.epoch)
    }
    var w = Array(repeating: Float(1), count: t)
    if finished >= 2 {
      let r = (0..<t).map { beforePrevious[$0] > 0 ? previous[$0] / beforePrevious[$0] : 1 }
      let top = r.max() ?? 0
      let e = r.map { exp(($0 - top) / temperature) }
      let total = e.reduce(0, +)
      w = e.map { Float(t) * $0 / total }
    }
    for i in 0..<t { sums[i] += input.losses[i] }
    steps += 1
    return w
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    let t = sums.count
    return [
      SafeTensors.Entry(name: "mtl.dwa.sums", shape: [t], values: sums),
      SafeTensors.Entry(name: "mtl.dwa.previous", shape: [t], values: previous),
      SafeTensors.Entry(name: "mtl.dwa.before_previous", shape: [t], values: beforePrevious),
      SafeTensors.Entry(name: "mtl.dwa.counters", shape: [3], values: [steps, finished, epoch]),
    ]
  }

  public func restore(_ name: String, _ values: [Float]) throws {
    switch name {
    case "mtl.dwa.sums": sums = values
    case "mtl.dwa.previous": previous = values
    case "mtl.dwa.before_previous": beforePrevious = values
    default:
      steps = values[0]
      finished = values[1]
      epoch = values[2]
    }
  }
}

/// Random loss weighting (Lin et al., TMLR 2022): w = softmax(z), zₜ ~ N(0, 1) drawn afresh
/// each step from the stream keyed by the step (so every rank draws the same).
public final class RandomLossWeighting: LossWeighting {
  public init() {}
  public func weights(_ input: BalancingInput) throws -> [Float] {
    var rng = input.random(0)
    let z = (0..<input.tasks).map { _ in rng.nextGaussian() }
    let top = z.max() ?? 0
    let e = z.map { exp($0 - top) }
    let total = e.reduce(0, +)
    return e.map { $0 / total }
  }
}

/// Geometric loss strategy (Chennupati et al., CVPR-W 2019): the objective is the geometric
/// mean L = (Πₜ Lₜ)^(1/T), whose gradient is Σₜ (L / (T·Lₜ))·∇Lₜ, so wₜ = L / (T·Lₜ).
/// Every task loss must be positive.
public final class GeometricLossStrategy: LossWeighting {
  public init() {}
  public func weights(_ input: BalancingInput) throws -> [Float] {
    if let bad = input.losses.first(where: { !($0 > 0 && $0.isFinite) }) {
      throw TrainError(
        "--mtl gls: the geometric mean needs positive task losses; got \(bad) at step \(input.step) (losses \(input.losses))")
    }
    let t = Double(input.tasks)
    let geometric = exp(input.losses.reduce(0.0) { $0 + log(Double($1)) } / t)
    return input.losses.map { Float(geometric / (t * Double($0))) }
  }
}

/// GradNorm (Chen et al., ICML 2018) with asymmetry α (`--gradnorm-alpha`, 1.5): learned
/// weights wₜ (initially 1) such that the weighted gradient norms Gₜ = wₜ‖∇Lₜ‖ (here over
/// all shared parameters, as LibMTL) follow each task's relative inverse training rate:
///
///     L_grad = Σₜ |Gₜ − Ḡ·rₜ^α|,   rₜ = L̃ₜ / meanⱼ L̃ⱼ,   L̃ₜ = Lₜ / Lₜ(first step),
///
/// with Ḡ·rₜ^α held constant. The step uses the current weights; then one gradient step of
/// L_grad (∂/∂wₜ = sign(Gₜ − Ḡrₜ^α)·‖∇Lₜ‖, step size `--mtl-lr`) and a renormalisation to
/// Σwₜ = T give the next step's.
public final class GradNorm: LossWeighting {
  let alpha: Float
  let learningRate: Float
  public private(set) var taskWeights: [Float]
  /// [T] the losses of the first step (0 until then).
  private(set) var initialLosses: [Float]

  public init(tasks: Int, alpha: Float, learningRate: Float) {
    self.alpha = alpha
    self.learningRate = learningRate
    taskWeights = Array(repeating: 1, count: tasks)
    initialLosses = Array(repeating: 0, count: tasks)
  }

  public func weights(_ input: BalancingInput) throws -> [Float] {
    let t = input.tasks
    let w = taskWeights
    if initialLosses.allSatisfy({ $0 == 0 }) { initialLosses = input.losses }
    let norms = (0..<t).map { Float(TaskAlgebra.dot(input.task($0), input.task($0), input.count).squareRoot()) }
    let g = (0..<t).map { w[$0] * norms[$0] }
    let meanG = g.reduce(0, +) / Float(t)
    let ratio = (0..<t).map { initialLosses[$0] > 0 ? input.losses[$0] / initialLosses[$0] : 1 }
    let meanRatio = ratio.reduce(0, +) / Float(t)
    var next = w
    for i in 0..<t {
      let r = meanRatio > 0 ? ratio[i] / meanRatio : 1
      let target = meanG * pow(r, alpha)
      let sign: Float = g[i] > target ? 1 : g[i] < target ? -1 : 0
      next[i] = max(w[i] - learningRate * sign * norms[i], 1e-6)
    }
    let total = next.reduce(0, +)
    taskWeights = next.map { Float(t) * $0 / total }
    return w
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    let t = taskWeights.count
    return [
      SafeTensors.Entry(name: "mtl.gradnorm.weights", shape: [t], values: taskWeights),
      SafeTensors.Entry(name: "mtl.gradnorm.initial_losses", shape: [t], values: initialLosses),
    ]
  }

  public func restore(_ name: String, _ values: [Float]) throws {
    if name == "mtl.gradnorm.weights" { taskWeights = values } else { initialLosses = values }
  }
}
