import Foundation

/// Adam (Kingma & Ba 2015) with PyTorch's rule (`torch.optim.Adam`, L2 weight decay added
/// to the gradient, no AMSGrad), per element with t the number of updates that element's
/// range has received:
///
///     g ← g + wd·w
///     m ← β₁·m + (1 − β₁)·g;   v ← β₂·v + (1 − β₂)·g²
///     w ← w − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// The update count is kept per range (PyTorch keeps `step` per tensor), so a range first
/// trained late — a later stage of layer-wise training — starts its bias correction at t = 1.
/// State buffers `exp_avg`, `exp_avg_sq` (PyTorch's names) and `step` (t of the element's
/// range, as Float: exact to 2²⁴ steps), all in arena layout.
public final class Adam: Optimizer {
  public let beta1: Float
  public let beta2: Float
  public let epsilon: Float
  public let weightDecay: Float
  public let parameterCount: Int
  /// [parameterCount] m, v and t; zero at start. Saved in checkpoints.
  let m: UnsafeMutablePointer<Float>
  let v: UnsafeMutablePointer<Float>
  let t: UnsafeMutablePointer<Float>

  public init(parameterCount: Int, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
    self.parameterCount = parameterCount
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    self.weightDecay = weightDecay
    let n = max(parameterCount, 1)
    m = .allocate(capacity: n)
    v = .allocate(capacity: n)
    t = .allocate(capacity: n)
    for p in [m, v, t] { p.initialize(repeating: 0, count: n) }
  }

  deinit {
    m.deallocate()
    v.deallocate()
    t.deallocate()
  }

  public var stateNames: [String] { ["exp_avg", "exp_avg_sq", "step"] }

  public func stateBuffer(named name: String) -> UnsafeMutablePointer<Float>? {
    switch name {
    case "exp_avg": m
    case "exp_avg_sq": v
    case "step": t
    default: nil
    }
  }

  public func step(_ arena: ParameterArena, lr: Float, ranges: [NamedRange]) throws {
    guard arena.isAllocated, arena.parameterCount == parameterCount else {
      throw OptimizerError(
        reason: "state is for \(parameterCount) parameters, arena has \(arena.parameterCount)"
          + (arena.isAllocated ? "" : " (not allocated)"))
    }
    let (b1, b2, eps, wd) = (beta1, beta2, epsilon, weightDecay)
    for r in ranges where r.count > 0 {
      let w = arena.params + r.offset
      let g = arena.grads + r.offset
      let m = self.m + r.offset
      let v = self.v + r.offset
      let t = self.t + r.offset
      let step = t[0] + 1
      // Bias corrections in Double, as PyTorch computes them on the host.
      let c1 = Float(1 - pow(Double(b1), Double(step)))
      let c2 = Float((1 - pow(Double(b2), Double(step))).squareRoot())
      let stepSize = lr / c1
      for i in 0..<r.count {
        let gi = g[i] + wd * w[i]
        m[i] = b1 * m[i] + (1 - b1) * gi
        v[i] = b2 * v[i] + (1 - b2) * gi * gi
        w[i] -= stepSize * m[i] / ((v[i].squareRoot() / c2) + eps)
        t[i] = step
      }
    }
  }
}
