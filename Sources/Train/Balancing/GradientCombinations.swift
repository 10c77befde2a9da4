import Data
import Foundation
import Model

/// A gradient combination: the shared gradient by its own rule; task-specific parameters keep
/// their task's gradient (weight 1) unless the method says otherwise.
public protocol GradientCombination: TaskBalancer {}

extension GradientCombination {
  public var kind: BalancerKind { .gradientCombination }
}

/// A uniformly random order of `items` from `rng` (Fisher–Yates).
func keyedShuffle(_ items: [Int], _ rng: inout KeyedRandom) -> [Int] {
  var a = items
  if a.count > 1 {
    for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, rng.nextInt(below: i + 1)) }
  }
  return a
}

/// PCGrad (Yu et al., NeurIPS 2020): for each task i, its gradient is projected onto the
/// normal plane of every other task's (original) gradient it conflicts with (negative dot
/// product), in a random order of the other tasks; the shared gradient is the sum.
///
///     gᵢ ← gᵢ − (gᵢ·gⱼ / ‖gⱼ‖²)·gⱼ   if gᵢ·gⱼ < 0
///
/// The order of task i is a shuffle from the step's stream i (`cyclic`: i+1, i+2, … mod T,
/// the fixture's order).
public final class PCGrad: GradientCombination {
  public enum Order { case random, cyclic }
  let order: Order
  public init(order: Order = .random) { self.order = order }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let t = input.tasks, n = input.count
    let norms = (0..<t).map { TaskAlgebra.dot(input.task($0), input.task($0), n) }
    direction.update(repeating: 0, count: n)
    var pc = [Float](repeating: 0, count: n)
    for i in 0..<t {
      pc.withUnsafeMutableBufferPointer { p in
        let g = p.baseAddress!
        g.update(from: input.task(i), count: n)
        var others = (1..<t).map { (i + $0) % t }
        if order == .random {
          var rng = input.random(i)
          others = keyedShuffle(others, &rng)
        }
        for j in others where norms[j] > 0 {
          let d = TaskAlgebra.dot(g, input.task(j), n)
          if d < 0 {
            let f = Float(d / norms[j])
            let gj = input.task(j)
            for k in 0..<n { g[k] -= f * gj[k] }
          }
        }
        for k in 0..<n { direction[k] += g[k] }
      }
    }
    return Array(repeating: 1, count: t)
  }
}

/// MGDA (Sener & Koltun, NeurIPS 2018) on the shared parameters' gradients: the min-norm
/// point d = Σ αᵢgᵢ of their convex hull (α on the simplex, Frank-Wolfe:
/// `TaskAlgebra.minNormWeights`), a common descent direction when one exists. As in the
/// paper's code the total differentiated is Σ αₜLₜ, so task t's own parameters get αₜ too.
/// (MGDA-UB proper takes α from the gradients of the shared representation; here they are
/// the shared parameters', the exact MGDA.)
public final class MGDA: GradientCombination {
  public init() {}
  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let alpha = TaskAlgebra.minNormWeights(input.gram())
    input.combine(alpha, into: direction)
    return alpha.map(Float.init)
  }
}

/// CAGrad (Liu et al., NeurIPS 2021): with g₀ the mean gradient and √φ = c‖g₀‖,
///
///     w* = argmin_{w ∈ simplex} g₀ᵀg_w + √φ‖g_w‖,   g_w = Σ wᵢgᵢ,
///     d = (g₀ + √φ/‖g_w*‖ · g_w*) / (1 + c²)             (LibMTL's rescale 1).
///
/// The inner problem (convex on the simplex) is solved by projected gradient descent with
/// backtracking on the T×T Gram matrix.
public final class CAGrad: GradientCombination {
  let c: Float
  public init(c: Float) { self.c = c }

  /// The weights w* for Gram matrix `m` (the fixture's `cagrad_weights`).
  public func weights(_ m: [[Double]]) -> [Double] {
    let t = m.count
    let b = m.map { row in row.reduce(0, +) / Double(t) }  // M·1/T: gᵢ·g₀
    let g0g0 = b.reduce(0, +) / Double(t)
    let k = Double(c) * max(g0g0, 0).squareRoot()
    func f(_ w: [Double]) -> Double {
      zip(w, b).reduce(0) { $0 + $1.0 * $1.1 } + k * max(TaskAlgebra.quadratic(m, w), 0).squareRoot()
    }
    var w = Array(repeating: 1 / Double(t), count: t)
    var fw = f(w)
    let scale = max(m.indices.map { m[$0][$0] }.max() ?? 0, .leastNormalMagnitude)
    var step = 1 / scale
    for _ in 0..<5000 {
      let mw = TaskAlgebra.matVec(m, w)
      let norm = max(TaskAlgebra.quadratic(m, w), 0).squareRoot()
      let grad = (0..<t).map { b[$0] + (norm > 0 ? k * mw[$0] / norm : 0) }
      var moved = false
      while step > 1e-30 / scale {
        let candidate = TaskAlgebra.projectOntoSimplex((0..<t).map { w[$0] - step * grad[$0] })
        let fc = f(candidate)
        let change = zip(candidate, w).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        // Armijo condition of projected gradient descent.
        if fc <= fw - change / (2 * step) + 1e-15 * abs(fw) {
          moved = change > 1e-30
          w = candidate
          fw = fc
          step *= 2
          break
        }
        step /= 2
      }
      if !moved { break }
    }
    return w
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let t = input.tasks
    let m = input.gram()
    let w = weights(m)
    let g0g0 = m.flatMap { $0 }.reduce(0, +) / Double(t * t)
    let k = Double(c) * max(g0g0, 0).squareRoot()
    let gw = max(TaskAlgebra.quadratic(m, w), 0).squareRoot()
    let lambda = gw > 0 ? k / gw : 0
    let rescale = 1 + Double(c) * Double(c)
    input.combine((0..<t).map { (1 / Double(t) + lambda * w[$0]) / rescale }, into: direction)
    return Array(repeating: 1, count: t)
  }
}

/// Gradient sign dropout (GradDrop; Chen et al., NeurIPS 2020), on the shared parameters'
/// gradients without leak: for each element, the positive-sign purity
/// P = ½(1 + Σₜgₜ / Σₜ|gₜ|) and one uniform U (the step's stream 0, element by element) keep
/// the positive components when P > U and the negative ones when P < U; d = the sum of the
/// kept components.
public final class GradDrop: GradientCombination {
  public init() {}
  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let t = input.tasks
    var rng = input.random(0)
    for i in 0..<input.count {
      var sum: Float = 0, magnitude: Float = 0
      for k in 0..<t {
        let g = input.task(k)[i]
        sum += g
        magnitude += abs(g)
      }
      let u = rng.nextFloat()
      guard magnitude > 0 else {
        direction[i] = 0
        continue
      }
      let p = 0.5 * (1 + sum / magnitude)
      var kept: Float = 0
      for k in 0..<t {
        let g = input.task(k)[i]
        if (p > u && g > 0) || (p < u && g < 0) { kept += g }
      }
      direction[i] = kept
    }
    return Array(repeating: 1, count: t)
  }
}

/// IMTL-G (Liu et al., ICLR 2021): the direction d = Σ αₜgₜ (Σα = 1) whose projections on
/// every task's unit gradient uₜ are equal. With D = [g₁−g₂, …, g₁−g_T] and
/// U = [u₁−u₂, …, u₁−u_T] (rows), α₂…α_T = g₁Uᵀ(DUᵀ)⁻¹ and α₁ = 1 − Σ. When DUᵀ is singular
/// (all gradients parallel, e.g. equal) every α gives the same equal projections: α = 1/T.
public final class IMTLG: GradientCombination {
  public init() {}

  public func alphas(_ input: BalancingInput) -> [Double] {
    let t = input.tasks
    guard t > 1 else { return [1] }
    let m = input.gram()
    let norms = (0..<t).map { m[$0][$0].squareRoot() }
    // gᵢ·uⱼ = Mᵢⱼ/‖gⱼ‖ (0 for a zero gradient).
    func gu(_ i: Int, _ j: Int) -> Double { norms[j] > 0 ? m[i][j] / norms[j] : 0 }
    var a = Array(repeating: Array(repeating: 0.0, count: t - 1), count: t - 1)
    var r = Array(repeating: 0.0, count: t - 1)
    for i in 1..<t {
      r[i - 1] = gu(0, 0) - gu(0, i)
      for j in 1..<t {
        // (g₁ − gᵢ)·(u₁ − uⱼ)
        a[i - 1][j - 1] = gu(0, 0) - gu(0, j) - gu(i, 0) + gu(i, j)
      }
    }
    // α_rest (a row) = r·A⁻¹, i.e. Aᵀ·α_restᵀ = rᵀ.
    let at = (0..<(t - 1)).map { i in (0..<(t - 1)).map { a[$0][i] } }
    guard let rest = TaskAlgebra.solve(at, r), rest.allSatisfy({ $0.isFinite }) else {
      return Array(repeating: 1 / Double(t), count: t)
    }
    return [1 - rest.reduce(0, +)] + rest
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    input.combine(alphas(input), into: direction)
    return Array(repeating: 1, count: input.tasks)
  }
}

/// Gradient vaccine (GradVac; Wang et al., ICLR 2021) on the whole shared model: each pair
/// (i, j) keeps an EMA target similarity φ̂ᵢⱼ (initially 0). For task i and each other task j
/// in a random order (the step's stream i), with ρ = cos(gᵢ', gⱼ):
///
///     if ρ < φ̂ᵢⱼ:  gᵢ' += gⱼ · ‖gᵢ'‖(φ̂ᵢⱼ√(1−ρ²) − ρ√(1−φ̂ᵢⱼ²)) / (‖gⱼ‖√(1−φ̂ᵢⱼ²))
///     φ̂ᵢⱼ ← (1−β)φ̂ᵢⱼ + βρ           (β = `--gradvac-beta`, 0.5)
///
/// and d = Σ gᵢ'. The targets are its state.
public final class GradVac: GradientCombination {
  let beta: Float
  /// [T, T] φ̂ᵢⱼ.
  public private(set) var targets: [Float]
  let tasks: Int

  public init(tasks: Int, beta: Float) {
    self.tasks = tasks
    self.beta = beta
    targets = Array(repeating: 0, count: tasks * tasks)
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let t = input.tasks, n = input.count
    let norms = (0..<t).map { TaskAlgebra.dot(input.task($0), input.task($0), n).squareRoot() }
    direction.update(repeating: 0, count: n)
    var pc = [Float](repeating: 0, count: n)
    for i in 0..<t {
      var rng = input.random(i)
      let others = keyedShuffle((0..<t).filter { $0 != i }, &rng)
      pc.withUnsafeMutableBufferPointer { p in
        let g = p.baseAddress!
        g.update(from: input.task(i), count: n)
        for j in others where norms[j] > 0 {
          let own = TaskAlgebra.dot(g, g, n).squareRoot()
          guard own > 0 else { continue }
          let rho = TaskAlgebra.dot(g, input.task(j), n) / (own * norms[j])
          let target = Double(targets[i * t + j])
          if rho < target {
            let w = own * (target * max(1 - rho * rho, 0).squareRoot() - rho * max(1 - target * target, 0).squareRoot())
              / (norms[j] * max(1 - target * target, 1e-12).squareRoot())
            let f = Float(w)
            let gj = input.task(j)
            for k in 0..<n { g[k] += f * gj[k] }
          }
          targets[i * t + j] = (1 - beta) * targets[i * t + j] + beta * Float(rho)
        }
        for k in 0..<n { direction[k] += g[k] }
      }
    }
    return Array(repeating: 1, count: t)
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    [SafeTensors.Entry(name: "mtl.gradvac.targets", shape: [tasks, tasks], values: targets)]
  }
  public func restore(_ name: String, _ values: [Float]) throws { targets = values }
}

/// Nash-MTL (Navon et al., ICML 2022): the bargaining solution d = Σ αₜgₜ with αₜ > 0 and
///
///     (M·α)ₜ = 1/αₜ,   M = GGᵀ,
///
/// i.e. gₜ·d = 1/αₜ. It is the minimiser of the strictly convex ½αᵀMα − Σ log αₜ, found by
/// damped Newton steps from the previous solution (M scaled by its Frobenius norm for
/// conditioning, as the paper's code does). When no direction improves every task (e.g. two
/// opposite gradients) the problem is unbounded; then, as the paper's code does on a solver
/// failure, the previous α is used (initially all ones). The total differentiated is Σ αₜLₜ,
/// so task t's own parameters get αₜ too. The previous α is its state.
public final class NashMTL: GradientCombination {
  public private(set) var previous: [Float]

  public init(tasks: Int) { previous = Array(repeating: 1, count: tasks) }

  /// α for Gram matrix `m`, or nil when the problem has no solution.
  public func solve(_ m: [[Double]]) -> [Double]? {
    let t = m.count
    let frobenius = m.flatMap { $0 }.reduce(0) { $0 + $1 * $1 }.squareRoot()
    guard frobenius > 0, frobenius.isFinite else { return nil }
    let a = m.map { $0.map { $0 / frobenius } }
    func f(_ x: [Double]) -> Double { 0.5 * TaskAlgebra.quadratic(a, x) - x.reduce(0) { $0 + log($1) } }
    var x = previous.map { Double($0) * frobenius.squareRoot() }
    if x.contains(where: { !($0 > 0) || !$0.isFinite }) { x = Array(repeating: 1, count: t) }
    var fx = f(x)
    for _ in 0..<200 {
      let ax = TaskAlgebra.matVec(a, x)
      let grad = (0..<t).map { ax[$0] - 1 / x[$0] }
      var h = a
      for i in 0..<t { h[i][i] += 1 / (x[i] * x[i]) }
      guard let step = TaskAlgebra.solve(h, grad.map { -$0 }) else { return nil }
      // The Newton decrement λ² (λ²/2 estimates f − min f; λ is about the relative error of
      // α). Below 1e-14 (α good to ~1e-7) one more full step converges quadratically to
      // double rounding, far below float precision of α. Waiting for a fixed smaller decrement
      // instead can stall at rounding's floor: a Gram matrix of two near-orthogonal task
      // gradients sat at λ² ≈ 3e-18 for 200 iterations, so one rank count fell back to the
      // previous α while another converged.
      let decrement = -zip(grad, step).reduce(0) { $0 + $1.0 * $1.1 }
      let solution = x.map { $0 / frobenius.squareRoot() }
      if decrement < 1e-14 {
        let last = (0..<t).map { x[$0] + step[$0] }
        return last.allSatisfy({ $0 > 0 }) ? last.map { $0 / frobenius.squareRoot() } : solution
      }
      var s = 1.0
      while s > 1e-20 {
        let candidate = (0..<t).map { x[$0] + s * step[$0] }
        if candidate.allSatisfy({ $0 > 0 }) {
          let fc = f(candidate)
          if fc <= fx - 0.25 * s * decrement {
            x = candidate
            fx = fc
            break
          }
        }
        s /= 2
      }
      // No decrease possible: at the minimum to rounding (a small decrement), or not.
      if s <= 1e-20 { return decrement < 1e-10 ? solution : nil }
      // Unbounded below: α runs away along a direction where the gradients cancel.
      if x.contains(where: { $0 > 1e12 }) { return nil }
    }
    return nil
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let alpha = solve(input.gram()).map { $0.map(Float.init) } ?? previous
    previous = alpha
    input.combine(alpha.map(Double.init), into: direction)
    return alpha
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    [SafeTensors.Entry(name: "mtl.nash_mtl.alpha", shape: [previous.count], values: previous)]
  }
  public func restore(_ name: String, _ values: [Float]) throws { previous = values }
}

/// MoCo, the multi-objective method of Fernando et al. (ICLR 2023), "Mitigating gradient bias
/// in multi-objective learning": tracking variables yₜ (initially 0) follow the task gradients
/// and λ (initially 1/T) takes a projected gradient step on ½‖Yᵀλ‖² + ρ/2‖λ‖²:
///
///     yₜ ← yₜ − βₖ(yₜ − gₜ),        βₖ = 0.5 / √k
///     λ  ← Π_simplex(λ − γₖ(YYᵀ + ρI)λ),   γₖ = 0.1 / √k,  ρ = 0
///     d  = Σ λₜyₜ
///
/// at step k (LibMTL's defaults for β, γ and their decay exponent 0.5). As in the paper, λ is
/// projected onto the simplex and the raw task gradients are tracked (LibMTL instead takes a
/// softmax and tracks gradients rescaled to norm Lₜ). Y and λ are its state (T × shared
/// floats: checkpointed and checked like the arena).
public final class MoCoMTL: GradientCombination {
  /// [T, count]
  public private(set) var tracked: [Float]
  public private(set) var lambda: [Float]
  let tasks: Int
  let count: Int
  let beta: Double = 0.5, gamma: Double = 0.1, rho: Double = 0

  public init(tasks: Int, count: Int) {
    self.tasks = tasks
    self.count = count
    tracked = Array(repeating: 0, count: tasks * count)
    lambda = Array(repeating: 1 / Float(tasks), count: tasks)
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    let t = input.tasks, n = input.count
    let k = Double(max(input.step, 1))
    let b = Float(beta / k.squareRoot())
    let g = gamma / k.squareRoot()
    var m = Array(repeating: Array(repeating: 0.0, count: t), count: t)
    tracked.withUnsafeMutableBufferPointer { y in
      let base = y.baseAddress!
      for task in 0..<t {
        let row = base + task * n
        let grad = input.task(task)
        for i in 0..<n { row[i] -= b * (row[i] - grad[i]) }
      }
      for i in 0..<t {
        for j in i..<t {
          let v = TaskAlgebra.dot(base + i * n, base + j * n, n)
          m[i][j] = v
          m[j][i] = v
        }
      }
      let l = lambda.map(Double.init)
      let ml = TaskAlgebra.matVec(m, l)
      lambda = TaskAlgebra.projectOntoSimplex((0..<t).map { l[$0] - g * (ml[$0] + rho * l[$0]) }).map(Float.init)
      direction.update(repeating: 0, count: n)
      for task in 0..<t {
        let row = base + task * n
        let w = lambda[task]
        for i in 0..<n { direction[i] += w * row[i] }
      }
    }
    return Array(repeating: 1, count: t)
  }

  public func stateEntries() -> [SafeTensors.Entry] {
    [
      SafeTensors.Entry(name: "mtl.moco.tracked", shape: [tasks, count], values: tracked),
      SafeTensors.Entry(name: "mtl.moco.lambda", shape: [tasks], values: lambda),
    ]
  }

  public func restore(_ name: String, _ values: [Float]) throws {
    if name == "mtl.moco.tracked" { tracked = values } else { lambda = values }
  }
}

/// Aligned-MTL (Senushkin et al., CVPR 2023): the task gradients are made orthogonal with
/// equal norms (condition number 1) by the eigendecomposition of M = GGᵀ = VΛVᵀ, keeping the
/// eigenvalues above max λ·T·ε (ε of float32):
///
///     B = √λ_min · V Λ^(−½) Vᵀ,    α = B·1,    d = Σ αₜgₜ
///
/// (λ_min the smallest eigenvalue kept), as LibMTL computes it.
public final class AlignedMTL: GradientCombination {
  public init() {}

  public func alphas(_ m: [[Double]]) -> [Double] {
    let t = m.count
    let (values, vectors) = TaskAlgebra.symmetricEigen(m)
    let top = values.last ?? 0
    let tolerance = max(top, 0) * Double(t) * Double(Float.ulpOfOne)
    let kept = values.indices.filter { values[$0] > tolerance }
    guard let smallest = kept.first.map({ values[$0] }) else { return Array(repeating: 0, count: t) }
    var alpha = Array(repeating: 0.0, count: t)
    for k in kept {
      let v = vectors[k]
      let s = smallest.squareRoot() / values[k].squareRoot()
      let sum = v.reduce(0, +)
      for i in 0..<t { alpha[i] += s * v[i] * sum }
    }
    return alpha
  }

  public func balance(_ input: BalancingInput, into direction: UnsafeMutablePointer<Float>) throws -> [Float] {
    input.combine(alphas(input.gram()), into: direction)
    return Array(repeating: 1, count: input.tasks)
  }
}
