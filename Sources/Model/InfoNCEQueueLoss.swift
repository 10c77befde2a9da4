import Foundation

/// MoCo's InfoNCE with a queue of negatives (He et al. 2020; MoCo-v2, Chen et al. 2020), mean
/// over the **global** batch.
///
/// Each rank holds queries `q` [B, D] (trained) and their keys `k` [B, D] (from the momentum
/// encoder: constants), and every rank holds the same queue [K, D] of earlier keys. Rows are
/// L2-normalised (`x/max(‖x‖, 1e-12)`, like `F.normalize`); for each query i, with τ the
/// temperature,
///
///     logits_i = [q̂_i·k̂_i, q̂_i·Q̂_1, …, q̂_i·Q̂_K] / τ,     ℓ_i = −log softmax(logits_i)_0
///     L = (1/N) Σ_i ℓ_i   over the N = ΣB queries of all ranks.
///
/// Only q receives a gradient and each query's loss reads only its own row, so a rank's share
/// of the gradient is its rows' `∂L/∂q` with the global N (invariant 3) and backward needs no
/// communication: `∂L/∂q̂_i = ((p_i0 − 1)·k̂_i + Σ_j p_ij·Q̂_j)/(τN)`, then through the
/// normalisation. The normalised keys are kept (`normalizedKeys`) for the caller to enqueue.
///
/// Collective calls: forward one `allReduceSum` (Double, 2 values: Σℓ and B); backward none.
public final class InfoNCEQueueLoss {
  public let temperature: Float
  public let collective: Collective

  /// [B, D] q̂, k̂; [K, D] Q̂.
  private let qn = Storage()
  private let kn = Storage()
  private let queueNormalized = Storage()
  /// [B] ‖q_i‖ (clamped).
  private let qNorms = Storage()
  /// [B, 1 + K] logits, then probabilities.
  private let probs = Storage()
  /// [B, D] ∂L/∂q̂, then ∂L/∂q.
  private let dqn = Storage()
  private let dq = Storage()
  private let reduction = UnsafeMutablePointer<Double>.allocate(capacity: 2)
  private var shape = Shape(0, 0)
  private var queueCount = 0
  private var count = 0.0
  private var ready = false

  static let normEps: Float = 1e-12

  /// - Parameters:
  ///   - temperature: τ > 0 (MoCo-v2: 0.2).
  ///   - collective: the world of ranks (`LocalCollective()` for one process).
  public init(temperature: Float, collective: Collective) {
    self.temperature = temperature
    self.collective = collective
    reduction.initialize(repeating: 0, count: 2)
  }

  deinit { reduction.deallocate() }

  /// The last forward's normalised keys k̂ [B, D] (owned by the loss).
  public var normalizedKeys: Tensor { Tensor(kn.data, shape) }

  /// - Parameters:
  ///   - q: [B, D] (or [B, D, 1, 1]) queries of this rank.
  ///   - k: [B, D] their positive keys.
  ///   - queue: [K, D] negatives, K ≥ 1, the same on every rank.
  /// - Returns: L over the global batch, the same on every rank.
  public func forward(q: Tensor, k: Tensor, queue: UnsafePointer<Float>, queueCount K: Int) throws -> Float {
    let B = q.shape.n
    let D = q.shape.perSample
    guard k.shape.n == B, k.shape.perSample == D, D >= 1, K >= 1 else {
      throw LayerShapeError(
        layer: "InfoNCEQueueLoss", reason: "q \(q.shape), k \(k.shape) and a queue of \(K) rows do not fit")
    }
    guard temperature > 0 else {
      throw LayerShapeError(layer: "InfoNCEQueueLoss", reason: "temperature \(temperature) must be positive")
    }
    shape = Shape(B, D)
    queueCount = K
    let Q = qn.ensure(B * D)
    let Kn = kn.ensure(B * D)
    let Qq = queueNormalized.ensure(K * D)
    let norms = qNorms.ensure(max(B, 1))
    Self.normalize(q.data, rows: B, D, into: Q, norms: norms)
    Self.normalize(k.data, rows: B, D, into: Kn, norms: nil)
    Self.normalize(queue, rows: K, D, into: Qq, norms: nil)
    let width = 1 + K
    let P = probs.ensure(B * width)
    let invT = 1 / temperature
    if B > 0 {
      // Negatives: P[:, 1...] = Q̂·Q̂ᵀ/τ, with row stride 1 + K.
      Gemm.sgemm(
        transA: false, transB: true, m: B, n: K, k: D, alpha: invT,
        a: Q, lda: D, b: Qq, ldb: D, beta: 0, c: P + 1, ldc: width)
    }
    var local = 0.0
    for i in 0..<B {
      let row = P + i * width
      var pos = 0.0
      for j in 0..<D { pos += Double(Q[i * D + j]) * Double(Kn[i * D + j]) }
      row[0] = Float(pos) * invT
      var mx = -Float.infinity
      for j in 0..<width { mx = max(mx, row[j]) }
      let shifted = row[0] - mx
      var sum = 0.0
      for j in 0..<width {
        let e = Double(expf(row[j] - mx))
        row[j] = Float(e)
        sum += e
      }
      // ℓ = −(l₀ − mx) + log Σ_j exp(l_j − mx).
      local += log(sum) - Double(shifted)
      let inv = 1 / sum
      for j in 0..<width { row[j] = Float(Double(row[j]) * inv) }
    }
    reduction[0] = local
    reduction[1] = Double(B)
    try collective.allReduceSum(reduction, count: 2)
    count = reduction[1]
    guard count > 0 else { throw LayerShapeError(layer: "InfoNCEQueueLoss", reason: "the global batch is empty") }
    ready = true
    return Float(reduction[0] / count)
  }

  /// - Returns: dq [B, D], the gradient of the global loss with respect to this rank's
  ///   queries; owned by the loss.
  public func backward() throws -> Tensor {
    guard ready else {
      throw LayerShapeError(layer: "InfoNCEQueueLoss", reason: "backward needs a forward first (once per forward)")
    }
    ready = false
    let B = shape.n
    let D = shape.perSample
    let K = queueCount
    let width = 1 + K
    let P = probs.data
    let scale = 1 / (temperature * Float(count))
    for i in 0..<B {
      let row = P + i * width
      row[0] -= 1
      for j in 0..<width { row[j] *= scale }
    }
    let G = dqn.ensure(B * D)
    if B > 0 {
      // ∂L/∂q̂ = A[:, 1...]·Q̂ + A[:, 0]·k̂.
      Gemm.sgemm(
        transA: false, transB: false, m: B, n: D, k: K, alpha: 1,
        a: P + 1, lda: width, b: queueNormalized.data, ldb: D, beta: 0, c: G, ldc: D)
    }
    let out = dq.tensor(shape)
    let u = qn.data
    let kh = kn.data
    let norms = qNorms.data
    for i in 0..<B {
      let a0 = P[i * width]
      for j in 0..<D { G[i * D + j] += a0 * kh[i * D + j] }
      let g = G + i * D
      let ui = u + i * D
      let o = out.data + i * D
      if norms[i] > Self.normEps {
        var dot = 0.0
        for j in 0..<D { dot += Double(ui[j]) * Double(g[j]) }
        let d = Float(dot)
        let inv = 1 / norms[i]
        for j in 0..<D { o[j] = (g[j] - ui[j] * d) * inv }
      } else {
        for j in 0..<D { o[j] = g[j] / Self.normEps }
      }
    }
    return out
  }

  /// Rows of `x` [rows, D] divided by their norms (clamped at 1e-12) into `out`; the clamped
  /// norms into `norms` when given.
  public static func normalize(
    _ x: UnsafePointer<Float>, rows: Int, _ D: Int, into out: UnsafeMutablePointer<Float>,
    norms: UnsafeMutablePointer<Float>?
  ) {
    for i in 0..<rows {
      var s = 0.0
      for j in 0..<D { s += Double(x[i * D + j]) * Double(x[i * D + j]) }
      let n = max(Float(s.squareRoot()), normEps)
      norms?[i] = n
      let inv = 1 / n
      for j in 0..<D { out[i * D + j] = x[i * D + j] * inv }
    }
  }
}
