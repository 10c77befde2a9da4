import CBLAS
import Foundation

/// SimCLR's NT-Xent (normalised temperature-scaled cross-entropy; Chen et al. 2020) over the
/// **global** batch, with the gradient that makes W ranks equal one (DESIGN.md invariant 3).
///
/// Each rank holds `z` [2B, D], the same B on every rank: rows `0..<B` are view 1 and
/// `B..<2B` view 2 of the same B samples (row i pairs with row B+i). Rows are L2-normalised
/// (`u = z/max(‖z‖, 1e-12)`) and all-gathered into `G` [2N, D], N = W·B, rank r's rows at
/// `r·2B`. For each anchor a with positive p and temperature τ,
///
///     ℓ_a = −u_a·g_p/τ + log Σ_{k≠a} exp(u_a·g_k/τ),      L = (1/2N) Σ_a ℓ_a
///
/// over all 2N anchors of all ranks. Each rank computes its 2B anchors' rows of the
/// similarity matrix (`U·Gᵀ`, one sgemm), the loss sum is all-reduced.
///
/// Backward: with `A = ∂L/∂S` [2B, 2N] for the local anchors, `dG = Aᵀ·U` (keys) plus `A·G`
/// added into the local slice (anchors); `dG` is all-reduced (summed) over ranks, and each
/// rank keeps its slice and goes back through the normalisation. Without the sum a rank
/// would miss the gradient its rows receive as keys of other ranks' anchors (lightly
/// issue 1528).
///
/// Collective calls, in order, identical on every rank: forward `allGather` then one
/// `allReduceSum` (Double, 1 value); backward one `allReduceSum` (2N·D floats).
public final class NTXentLoss {
  public let temperature: Float
  public let collective: Collective

  /// [2B, D] normalised local rows u.
  private let normalized = Storage()
  /// [2B] ‖z_i‖ (clamped at 1e-12).
  private let norms = Storage()
  /// [2N, D] gathered normalised rows G.
  private let gathered = Storage()
  /// [2B, 2N] similarities, then softmax probabilities, then ∂L/∂S.
  private let probs = Storage()
  /// [2N, D] gradient with respect to G.
  private let dGathered = Storage()
  /// [2B, D] gradient with respect to z.
  private let dz = Storage()
  /// Loss-sum reduction buffer.
  private let lossSum = UnsafeMutablePointer<Double>.allocate(capacity: 1)
  private var localRows = 0
  private var dim = 0
  private var forwardShape = Shape(0, 0)
  private var ready = false

  static let normEps: Float = 1e-12

  /// - Parameters:
  ///   - temperature: τ > 0.
  ///   - collective: the world of ranks (`LocalCollective()` for one process).
  public init(temperature: Float, collective: Collective) {
    self.temperature = temperature
    self.collective = collective
    lossSum.initialize(to: 0)
  }

  deinit { lossSum.deallocate() }

  /// - Parameters:
  ///   - z: [2B, D] (or [2B, D, H, W], flattened per row) local projections.
  /// - Returns: the mean of ℓ over the 2N global anchors; the same value on every rank.
  public func forward(_ z: Tensor) throws -> Float {
    let rows = z.shape.n
    let D = z.shape.perSample
    guard rows >= 2, rows % 2 == 0, D >= 1 else {
      throw LayerShapeError(
        layer: "NTXentLoss",
        reason: "input \(z.shape) must have an even number (≥ 2) of rows, views 1 then views 2")
    }
    guard temperature > 0 else {
      throw LayerShapeError(
        layer: "NTXentLoss", reason: "temperature \(temperature) must be positive")
    }
    let W = collective.size
    let r = collective.rank
    let B = rows / 2
    let total = rows * W  // 2N
    localRows = rows
    dim = D
    forwardShape = z.shape

    // u = z/‖z‖
    let u = normalized.ensure(rows * D)
    let nrm = norms.ensure(rows)
    for i in 0..<rows {
      let zi = z.data + i * D
      var s = 0.0
      for j in 0..<D { s += Double(zi[j]) * Double(zi[j]) }
      let n = max(Float(s.squareRoot()), Self.normEps)
      nrm[i] = n
      let inv = 1 / n
      for j in 0..<D { u[i * D + j] = zi[j] * inv }
    }

    let G = gathered.ensure(total * D)
    try collective.allGather(u, count: rows * D, into: G)

    // S = U·Gᵀ [2B, 2N], scaled by 1/τ.
    let P = probs.ensure(rows * total)
    let invT = 1 / temperature
    Gemm.sgemm(
      transA: false, transB: true, m: rows, n: total, k: D, alpha: invT,
      a: u, lda: D, b: G, ldb: D, beta: 0,
      c: P, ldc: total)

    // Row-wise softmax over k ≠ a; P becomes probabilities (0 on the diagonal).
    var localLoss = 0.0
    for i in 0..<rows {
      let a = r * rows + i
      let p = r * rows + (i < B ? i + B : i - B)
      let row = P + i * total
      var mx = -Float.infinity
      for k in 0..<total where k != a { mx = max(mx, row[k]) }
      let positive = row[p]
      var sum = 0.0
      for k in 0..<total where k != a {
        let e = Double(expf(row[k] - mx))
        row[k] = Float(e)
        sum += e
      }
      // ℓ = −(s_p − mx) + log Σ_{k≠a} exp(s_k − mx).
      localLoss += log(sum) - Double(positive - mx)
      let inv = 1 / sum
      for k in 0..<total where k != a { row[k] = Float(Double(row[k]) * inv) }
      row[a] = 0
    }
    lossSum.pointee = localLoss
    try collective.allReduceSum(lossSum, count: 1)
    ready = true
    return Float(lossSum.pointee / Double(total))
  }

  /// Call once after each `forward`.
  /// - Returns: dz [2B, D] (shape of the forward input), the gradient of the global mean
  ///   loss with respect to this rank's rows; owned by the loss, valid until the next call.
  public func backward() throws -> Tensor {
    guard ready else {
      throw LayerShapeError(
        layer: "NTXentLoss", reason: "backward needs a forward first (once per forward)")
    }
    ready = false  // the probabilities are turned into ∂L/∂S in place
    let rows = localRows
    let D = dim
    let W = collective.size
    let r = collective.rank
    let B = rows / 2
    let total = rows * W
    let u = normalized.data
    let G = gathered.data
    let A = probs.data
    // A = ∂L/∂S = (P − onehot(p)) / (τ·2N).
    let scale = 1 / (temperature * Float(total))
    for i in 0..<rows {
      let p = r * rows + (i < B ? i + B : i - B)
      let row = A + i * total
      row[p] -= 1
      for k in 0..<total { row[k] *= scale }
    }
    let dG = dGathered.ensure(total * D)
    // Keys: dG = Aᵀ·U [2N, D].
    Gemm.sgemm(
      transA: true, transB: false, m: total, n: D, k: rows, alpha: 1,
      a: A, lda: total, b: u, ldb: D, beta: 0,
      c: dG, ldc: D)
    // Anchors: dG[local slice] += A·G [2B, D].
    Gemm.sgemm(
      transA: false, transB: false, m: rows, n: D, k: total, alpha: 1,
      a: A, lda: total, b: G, ldb: D, beta: 1,
      c: dG + r * rows * D, ldc: D)
    try collective.allReduceSum(dG, count: total * D)

    // Back through u = z/‖z‖: dz = (du − u·(u·du))/‖z‖.
    let out = dz.tensor(forwardShape)
    let du = dG + r * rows * D
    let nrm = norms.data
    for i in 0..<rows {
      let ui = u + i * D
      let gi = du + i * D
      let di = out.data + i * D
      if nrm[i] > Self.normEps {
        var dot = 0.0
        for j in 0..<D { dot += Double(ui[j]) * Double(gi[j]) }
        let d = Float(dot)
        let inv = 1 / nrm[i]
        for j in 0..<D { di[j] = (gi[j] - ui[j] * d) * inv }
      } else {
        for j in 0..<D { di[j] = gi[j] / Self.normEps }
      }
    }
    return out
  }
}
