import Foundation

/// Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021) over the **global** batch.
///
/// Each rank holds `z1`, `z2` [B, D], the projections of views 1 and 2 of its B samples (B may
/// differ between ranks; N = ΣB). Every dimension is standardised over the N rows of all ranks
/// (biased variance, ε inside the square root, as `BatchNorm1d` without affine):
///
///     a = (z1 − μ1)/√(σ1² + ε),   b = (z2 − μ2)/√(σ2² + ε)
///     C = aᵀb / N                                      [D, D]
///     L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²
///
/// Global, not per rank: forward all-reduces the per-dimension sums and sums of squares of both
/// views (with the row count), standardises the local rows with the global moments, and
/// all-reduces the D×D cross products `aᵀb` of the local rows, so C is the matrix of the whole
/// batch on every rank. (Cross products of standardised rows rather than raw ones: the same C,
/// without the cancellation of `Σz1z2ᵀ/N − μ1μ2ᵀ` in float.)
///
/// Backward, with `G = ∂L/∂C` (`G_ii = −2(1 − C_ii)`, `G_ij = 2λC_ij`): `∂L/∂a = bGᵀ/N`,
/// `∂L/∂b = aG/N` for the local rows, then back through the standardisation as sync BN does
/// (`dz = r·(da − Σda/N − a·Σ(da·a)/N)` with global sums), so the rows of every rank get the
/// gradient of the global loss and W ranks equal one (DESIGN.md invariant 3).
///
/// Collective calls, in order, identical on every rank: forward `allReduceSum` (Double,
/// 1 + 4D values) then `allReduceSum` (Float, D² values); backward `allReduceSum` (Double, 4D).
public final class BarlowTwinsLoss {
  /// λ, the weight of the off-diagonal terms.
  public let lambda: Float
  /// ε added to the variance.
  public let eps: Float
  public let collective: Collective

  /// [B, D] standardised local rows a, b.
  private let a = Storage()
  private let b = Storage()
  /// [D] 1/√(σ² + ε) of each view.
  private let r1 = Storage()
  private let r2 = Storage()
  /// [D, D] C, then ∂L/∂C.
  private let c = Storage()
  /// [B, D] ∂L/∂a, ∂L/∂b, then the outputs dz1, dz2.
  private let da = Storage()
  private let db = Storage()
  private let dz1 = Storage()
  private let dz2 = Storage()
  /// Forward: [N, Σz1, Σz1², Σz2, Σz2²]; backward: [Σda, Σda·a, Σdb, Σdb·b] (Double).
  private var moments: [Double] = []
  private var shape = Shape(0, 0)
  private var count = 0.0
  private var ready = false

  /// - Parameters:
  ///   - lambda: λ ≥ 0 (the paper's 5e-3).
  ///   - eps: added to the batch variance before the square root.
  ///   - collective: the world of ranks (`LocalCollective()` for one process).
  public init(lambda: Float = 5e-3, eps: Float = 1e-5, collective: Collective) {
    self.lambda = lambda
    self.eps = eps
    self.collective = collective
  }

  /// - Parameters:
  ///   - z1, z2: [B, D] (or [B, D, 1, 1]) projections of views 1 and 2 of the local samples.
  /// - Returns: L over the global batch, the same on every rank.
  public func forward(z1: Tensor, z2: Tensor) throws -> Float {
    let B = z1.shape.n
    let D = z1.shape.perSample
    guard z2.shape.n == B, z2.shape.perSample == D, D >= 1 else {
      throw LayerShapeError(
        layer: "BarlowTwinsLoss", reason: "z1 \(z1.shape) and z2 \(z2.shape) must have the same rows and features")
    }
    shape = Shape(B, D)
    moments = [Double](repeating: 0, count: 1 + 4 * D)
    moments[0] = Double(B)
    for (v, z) in [z1, z2].enumerated() {
      let sum = 1 + 2 * v * D
      for n in 0..<B {
        let row = z.data + n * D
        for j in 0..<D {
          let x = Double(row[j])
          moments[sum + j] += x
          moments[sum + D + j] += x * x
        }
      }
    }
    try moments.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: $0.count) }
    let N = moments[0]
    guard N > 1 else {
      throw LayerShapeError(layer: "BarlowTwinsLoss", reason: "standardising over the batch needs more than 1 row, got \(Int(N))")
    }
    count = N
    let A = a.ensure(B * D)
    let Bv = b.ensure(B * D)
    for (v, (z, out, r)) in [(z1, A, r1.ensure(D)), (z2, Bv, r2.ensure(D))].enumerated() {
      let sum = 1 + 2 * v * D
      for j in 0..<D {
        let mean = moments[sum + j] / N
        let variance = max(moments[sum + D + j] / N - mean * mean, 0)
        r[j] = Float(1 / (variance + Double(eps)).squareRoot())
        moments[sum + j] = mean
      }
      for n in 0..<B {
        for j in 0..<D { out[n * D + j] = Float((Double(z.data[n * D + j]) - moments[sum + j]) * Double(r[j])) }
      }
    }
    // C = aᵀb/N [D, D]: each rank's rows, summed over ranks.
    let C = c.ensure(D * D)
    if B > 0 {
      Gemm.sgemm(
        transA: true, transB: false, m: D, n: D, k: B, alpha: Float(1 / N),
        a: A, lda: D, b: Bv, ldb: D, beta: 0, c: C, ldc: D)
    } else {
      C.update(repeating: 0, count: D * D)
    }
    try collective.allReduceSum(C, count: D * D)
    // The loss, and C becomes G = ∂L/∂C in place.
    var loss = 0.0
    let twoLambda = 2 * lambda
    for i in 0..<D {
      for j in 0..<D {
        let v = C[i * D + j]
        if i == j {
          let d = 1 - Double(v)
          loss += d * d
          C[i * D + j] = -2 * (1 - v)
        } else {
          loss += Double(lambda) * Double(v) * Double(v)
          C[i * D + j] = twoLambda * v
        }
      }
    }
    ready = true
    return Float(loss)
  }

  /// Call once after each `forward`.
  /// - Returns: (dz1, dz2) [B, D], the gradient of the global loss with respect to this rank's
  ///   rows; owned by the loss, valid until the next call.
  public func backward() throws -> (dz1: Tensor, dz2: Tensor) {
    guard ready else {
      throw LayerShapeError(layer: "BarlowTwinsLoss", reason: "backward needs a forward first (once per forward)")
    }
    ready = false
    let B = shape.n
    let D = shape.perSample
    let N = count
    let G = c.data
    let dA = da.ensure(B * D)
    let dB = db.ensure(B * D)
    if B > 0 {
      // ∂L/∂a = b·Gᵀ/N, ∂L/∂b = a·G/N.
      Gemm.sgemm(
        transA: false, transB: true, m: B, n: D, k: D, alpha: Float(1 / N),
        a: b.data, lda: D, b: G, ldb: D, beta: 0, c: dA, ldc: D)
      Gemm.sgemm(
        transA: false, transB: false, m: B, n: D, k: D, alpha: Float(1 / N),
        a: a.data, lda: D, b: G, ldb: D, beta: 0, c: dB, ldc: D)
    }
    moments = [Double](repeating: 0, count: 4 * D)
    for (v, (g, x)) in [(dA, a.data), (dB, b.data)].enumerated() {
      let sum = 2 * v * D
      for n in 0..<B {
        for j in 0..<D {
          let d = Double(g[n * D + j])
          moments[sum + j] += d
          moments[sum + D + j] += d * Double(x[n * D + j])
        }
      }
    }
    try moments.withUnsafeMutableBufferPointer { try collective.allReduceSum($0.baseAddress!, count: $0.count) }
    let out1 = dz1.tensor(shape)
    let out2 = dz2.tensor(shape)
    for (v, (g, x, r, out)) in [(dA, a.data, r1.data, out1.data), (dB, b.data, r2.data, out2.data)].enumerated() {
      let sum = 2 * v * D
      for j in 0..<D {
        let meanG = moments[sum + j] / N
        let meanGX = moments[sum + D + j] / N
        let rj = Double(r[j])
        for n in 0..<B {
          let i = n * D + j
          out[i] = Float(rj * (Double(g[i]) - meanG - Double(x[i]) * meanGX))
        }
      }
    }
    return (out1, out2)
  }
}
