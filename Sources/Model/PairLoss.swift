import Foundation

/// Distances between two batches `a`, `b` of the same shape, averaged over the **global**
/// batch (the rows of every rank), with both gradients: the autoencoders' reconstruction loss
/// (`mse` of the decoder output against its target, gradient to `a` only) and the parallel
/// autoencoder's embedding losses between the two views' embeddings.
///
/// - `mse`: mean over all elements of `(a − b)²`;
/// - `l1`: mean over all elements of `|a − b|` (subgradient 0 at 0, as PyTorch);
/// - `cosine`: mean over rows of `1 − cos(a_n, b_n)` (norms clamped at 1e-8 as
///   `F.cosine_similarity`).
///
/// One collective per forward: the local sum and the local row count, all-reduced (Double).
public final class PairLoss {
  public enum Kind: String, Sendable, CaseIterable {
    case mse, l1, cosine
  }

  public let kind: Kind
  public let collective: Collective
  private let da = Storage()
  private let db = Storage()
  private let reduction = UnsafeMutablePointer<Double>.allocate(capacity: 2)
  private var ready = false
  private var shape = Shape(0, 0)

  public init(_ kind: Kind, collective: Collective) {
    self.kind = kind
    self.collective = collective
  }

  deinit { reduction.deallocate() }

  /// - Returns: the loss over the global batch (the same on every rank); computes both
  ///   gradients for `backward`.
  public func forward(_ a: Tensor, _ b: Tensor) throws -> Float {
    guard a.shape == b.shape, a.count > 0 else {
      throw LayerShapeError(layer: "\(kind) loss", reason: "inputs \(a.shape) and \(b.shape) must match")
    }
    let rows = a.shape.n, d = a.shape.perSample
    var sum = 0.0
    switch kind {
    case .mse:
      for i in 0..<a.count {
        let v = Double(a.data[i]) - Double(b.data[i])
        sum += v * v
      }
    case .l1:
      for i in 0..<a.count { sum += abs(Double(a.data[i]) - Double(b.data[i])) }
    case .cosine:
      for r in 0..<rows { sum += 1 - cosine(a.data + r * d, b.data + r * d, d).cos }
    }
    reduction[0] = sum
    reduction[1] = Double(rows)
    try collective.allReduceSum(reduction, count: 2)
    let globalRows = reduction[1]
    let ga = da.tensor(a.shape), gb = db.tensor(b.shape)
    switch kind {
    case .mse, .l1:
      let scale = 1 / (globalRows * Double(d))
      for i in 0..<a.count {
        let v = Double(a.data[i]) - Double(b.data[i])
        let g = kind == .mse ? 2 * v * scale : (v > 0 ? scale : v < 0 ? -scale : 0)
        ga.data[i] = Float(g)
        gb.data[i] = Float(-g)
      }
    case .cosine:
      // ∂(1 − cos)/∂a = −(b̂ − â·cos)/‖a‖, and symmetrically for b.
      let scale = 1 / globalRows
      for r in 0..<rows {
        let pa = a.data + r * d, pb = b.data + r * d
        let (c, na, nb) = cosine(pa, pb, d)
        for j in 0..<d {
          let ahat = Double(pa[j]) / na, bhat = Double(pb[j]) / nb
          ga.data[r * d + j] = Float(-scale * (bhat - ahat * c) / na)
          gb.data[r * d + j] = Float(-scale * (ahat - bhat * c) / nb)
        }
      }
    }
    ready = true
    shape = a.shape
    return Float(reduction[0] / (kind == .cosine ? globalRows : globalRows * Double(d)))
  }

  /// (∂L/∂a, ∂L/∂b), this rank's rows of the gradient of the global mean; owned by the loss.
  public func backward() throws -> (Tensor, Tensor) {
    guard ready else { throw LayerShapeError(layer: "\(kind) loss", reason: "backward before forward") }
    return (da.tensor(shape), db.tensor(shape))
  }

  private func cosine(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ d: Int) -> (cos: Double, na: Double, nb: Double) {
    var ab = 0.0, aa = 0.0, bb = 0.0
    for j in 0..<d {
      ab += Double(a[j]) * Double(b[j])
      aa += Double(a[j]) * Double(a[j])
      bb += Double(b[j]) * Double(b[j])
    }
    let na = max(aa.squareRoot(), 1e-8), nb = max(bb.squareRoot(), 1e-8)
    return (ab / (na * nb), na, nb)
  }
}
