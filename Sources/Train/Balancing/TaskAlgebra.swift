import Foundation

/// The small dense problems of the balancing methods, over T tasks (T×T matrices), in double
/// precision: dot products, the simplex projection, the min-norm solver, a symmetric
/// eigendecomposition and a linear solve. T is a handful, so clarity beats speed here.
public enum TaskAlgebra {
  /// a·b over n floats, accumulated in double.
  public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
    var s = 0.0
    for i in 0..<n { s += Double(a[i]) * Double(b[i]) }
    return s
  }

  static func matVec(_ m: [[Double]], _ v: [Double]) -> [Double] {
    m.map { row in zip(row, v).reduce(0) { $0 + $1.0 * $1.1 } }
  }

  static func quadratic(_ m: [[Double]], _ v: [Double]) -> Double {
    zip(v, matVec(m, v)).reduce(0) { $0 + $1.0 * $1.1 }
  }

  /// The Euclidean projection of v onto the probability simplex {w ≥ 0, Σw = 1} (sort and
  /// threshold: Held, Wolfe & Crowder 1974; Duchi et al. 2008).
  public static func projectOntoSimplex(_ v: [Double]) -> [Double] {
    let u = v.sorted(by: >)
    var cumulative = 0.0
    var theta = 0.0
    for (i, x) in u.enumerated() {
      cumulative += x
      let t = (cumulative - 1) / Double(i + 1)
      if x - t > 0 { theta = t }
    }
    return v.map { max($0 - theta, 0) }
  }

  /// The weights α on the simplex that minimise ‖Σ αᵢ gᵢ‖² = αᵀMα for the Gram matrix M:
  /// MGDA's min-norm point of the convex hull of the gradients.
  ///
  /// Sener & Koltun's solver: start from the best pair (closed form for two vectors), then
  /// Frank-Wolfe steps towards the vertex of the smallest (Mα)ᵢ with exact line search until
  /// the duality gap αᵀMα − minᵢ(Mα)ᵢ vanishes; finally a fully-corrective step solves the
  /// problem exactly on the support found (the KKT system), kept when it is feasible and no
  /// worse, since plain Frank-Wolfe converges only as O(1/k) inside a face.
  public static func minNormWeights(_ m: [[Double]], iterations: Int = 10_000) -> [Double] {
    let n = m.count
    guard n > 1 else { return Array(repeating: 1, count: n) }
    // Best pair.
    var alpha = Array(repeating: 0.0, count: n)
    var best = Double.infinity
    for i in 0..<n {
      for j in (i + 1)..<n {
        let (g, cost) = minNormOfTwo(m[i][i], m[i][j], m[j][j])
        if cost < best {
          best = cost
          alpha = Array(repeating: 0.0, count: n)
          alpha[i] = g
          alpha[j] = 1 - g
        }
      }
    }
    let scale = max(m.indices.map { m[$0][$0] }.max() ?? 0, .leastNormalMagnitude)
    for _ in 0..<iterations {
      let ma = matVec(m, alpha)
      let v1v1 = zip(alpha, ma).reduce(0) { $0 + $1.0 * $1.1 }
      guard let t = ma.indices.min(by: { ma[$0] < ma[$1] }) else { break }
      if v1v1 - ma[t] <= 1e-14 * scale { break }
      // Weight γ on the current point, 1 − γ on vertex t.
      let (g, _) = minNormOfTwo(v1v1, ma[t], m[t][t])
      for i in 0..<n { alpha[i] *= g }
      alpha[t] += 1 - g
    }
    if let exact = solveOnSupport(m, alpha), quadratic(m, exact) <= quadratic(m, alpha) * (1 + 1e-12) + 1e-300 {
      alpha = exact
    }
    return alpha
  }

  /// min over γ ∈ [0, 1] of ‖γ·a + (1 − γ)·b‖² given a·a, a·b, b·b: (γ, cost).
  static func minNormOfTwo(_ aa: Double, _ ab: Double, _ bb: Double) -> (Double, Double) {
    if ab >= aa { return (1, aa) }
    if ab >= bb { return (0, bb) }
    let g = (bb - ab) / (aa + bb - 2 * ab)
    return (g, bb + g * (ab - bb))
  }

  /// The min-norm weights on the support of `alpha` (entries > 1e-12) from the KKT system
  /// [M_SS 1; 1ᵀ 0]·[α; −μ] = [0; 1]; nil when singular or infeasible.
  static func solveOnSupport(_ m: [[Double]], _ alpha: [Double]) -> [Double]? {
    let s = alpha.indices.filter { alpha[$0] > 1e-12 }
    let k = s.count
    guard k > 1 else { return nil }
    var a = Array(repeating: Array(repeating: 0.0, count: k + 1), count: k + 1)
    var b = Array(repeating: 0.0, count: k + 1)
    for (r, i) in s.enumerated() {
      for (c, j) in s.enumerated() { a[r][c] = m[i][j] }
      a[r][k] = 1
      a[k][r] = 1
    }
    b[k] = 1
    guard let x = solve(a, b) else { return nil }
    var out = Array(repeating: 0.0, count: m.count)
    for (r, i) in s.enumerated() {
      guard x[r] >= 0 else { return nil }
      out[i] = x[r]
    }
    return out
  }

  /// Solves A·x = b by Gaussian elimination with partial pivoting; nil when A is singular
  /// (a pivot below 1e-12 of A's largest entry).
  public static func solve(_ a: [[Double]], _ b: [Double]) -> [Double]? {
    let n = b.count
    var m = a
    var y = b
    let largest = a.flatMap { $0 }.map(abs).max() ?? 0
    guard largest > 0 else { return nil }
    for col in 0..<n {
      guard let p = (col..<n).max(by: { abs(m[$0][col]) < abs(m[$1][col]) }), abs(m[p][col]) > 1e-12 * largest else {
        return nil
      }
      m.swapAt(col, p)
      y.swapAt(col, p)
      for r in (col + 1)..<n {
        let f = m[r][col] / m[col][col]
        if f == 0 { continue }
        for c in col..<n { m[r][c] -= f * m[col][c] }
        y[r] -= f * y[col]
      }
    }
    var x = Array(repeating: 0.0, count: n)
    for r in stride(from: n - 1, through: 0, by: -1) {
      var s = y[r]
      for c in (r + 1)..<n { s -= m[r][c] * x[c] }
      x[r] = s / m[r][r]
    }
    return x
  }

  /// Eigenvalues (ascending) and unit eigenvectors (`vectors[k]` belongs to `values[k]`) of a
  /// symmetric matrix, by cyclic Jacobi rotations.
  public static func symmetricEigen(_ a: [[Double]]) -> (values: [Double], vectors: [[Double]]) {
    let n = a.count
    var m = a
    var v = (0..<n).map { i in (0..<n).map { $0 == i ? 1.0 : 0.0 } }
    for _ in 0..<100 {
      var off = 0.0
      for i in 0..<n { for j in 0..<n where i != j { off += m[i][j] * m[i][j] } }
      let total = m.flatMap { $0 }.reduce(0) { $0 + $1 * $1 }
      if off <= 1e-30 * max(total, .leastNormalMagnitude) { break }
      for p in 0..<n {
        for q in (p + 1)..<n where m[p][q] != 0 {
          let theta = (m[q][q] - m[p][p]) / (2 * m[p][q])
          let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
          let c = 1 / (t * t + 1).squareRoot()
          let s = t * c
          for k in 0..<n {
            let mkp = m[k][p], mkq = m[k][q]
            m[k][p] = c * mkp - s * mkq
            m[k][q] = s * mkp + c * mkq
          }
          for k in 0..<n {
            let mpk = m[p][k], mqk = m[q][k]
            m[p][k] = c * mpk - s * mqk
            m[q][k] = s * mpk + c * mqk
          }
          for k in 0..<n {
            let vkp = v[k][p], vkq = v[k][q]
            v[k][p] = c * vkp - s * vkq
            v[k][q] = s * vkp + c * vkq
          }
        }
      }
    }
    let order = (0..<n).sorted { m[$0][$0] < m[$1][$1] }
    return (order.map { m[$0][$0] }, order.map { k in (0..<n).map { v[$0][k] } })
  }
}
