import Foundation

/// SimSiam's symmetric negative cosine similarity with stop-gradient on the targets (Chen &
/// He 2021), averaged over the **global** batch:
///
///     L = −(1/2N) Σ_i [ cos(p1_i, sg(z2_i)) + cos(p2_i, sg(z1_i)) ]
///
/// with N the global batch (sum of the ranks' B). For `p̂ = p/‖p‖`, `ẑ = z/‖z‖`:
/// `∂cos(p, z)/∂p = (ẑ − p̂·(p̂·ẑ))/‖p‖`. No gradient flows to z1, z2 (stop-gradient), so
/// `backward` returns only dp1, dp2. Norms are clamped at 1e-12 like `F.normalize`.
///
/// Collective calls: forward one `allReduceSum` (Double, 2 values: Σcos and B), so the loss
/// and the gradient scale are global and W ranks equal one; backward none.
public final class SimSiamLoss {
  public let collective: Collective

  /// [B, D] ∂L/∂p1 and ∂L/∂p2.
  private let dp1 = Storage()
  private let dp2 = Storage()
  /// [Σcos, B] reduction buffer. Forward computes the gradients, so no inputs are saved.
  private let reduction = UnsafeMutablePointer<Double>.allocate(capacity: 2)
  private var shape = Shape(0, 0)
  private var ready = false

  static let normEps: Float = 1e-12

  public init(collective: Collective) {
    self.collective = collective
    reduction.initialize(repeating: 0, count: 2)
  }

  deinit { reduction.deallocate() }

  /// - Parameters:
  ///   - p1, p2: [B, D] predictor outputs of views 1 and 2.
  ///   - z1, z2: [B, D] projections of views 1 and 2 (targets, no gradient).
  /// - Returns: L, the same on every rank. Computes the gradients for `backward`.
  public func forward(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) throws -> Float {
    guard p1.shape == p2.shape, z1.shape == p1.shape, z2.shape == p1.shape, p1.count > 0 else {
      throw LayerShapeError(
        layer: "SimSiamLoss",
        reason:
          "p1 \(p1.shape), p2 \(p2.shape), z1 \(z1.shape), z2 \(z2.shape) must have one nonempty shape"
      )
    }
    shape = p1.shape
    let B = shape.n
    let D = shape.perSample
    let g1 = dp1.ensure(B * D)
    let g2 = dp2.ensure(B * D)
    var sum = 0.0
    for i in 0..<B {
      sum += Self.cosine(p1.data + i * D, z2.data + i * D, D, grad: g1 + i * D)
      sum += Self.cosine(p2.data + i * D, z1.data + i * D, D, grad: g2 + i * D)
    }
    reduction[0] = sum
    reduction[1] = Double(B)
    try collective.allReduceSum(reduction, count: 2)
    let N = reduction[1]
    let scale = Float(-1 / (2 * N))
    for j in 0..<B * D {
      g1[j] *= scale
      g2[j] *= scale
    }
    ready = true
    return Float(-reduction[0] / (2 * N))
  }

  /// - Returns: (dp1, dp2) [B, D], gradients of the global mean loss with respect to this
  ///   rank's predictions; owned by the loss.
  public func backward() throws -> (dp1: Tensor, dp2: Tensor) {
    guard ready else {
      throw LayerShapeError(layer: "SimSiamLoss", reason: "backward needs a forward first")
    }
    return (Tensor(dp1.data, shape), Tensor(dp2.data, shape))
  }

  /// Returns cos(p, z) and writes ∂cos/∂p = (ẑ − p̂·cos)/‖p‖ into `grad` [D].
  private static func cosine(
    _ p: UnsafePointer<Float>, _ z: UnsafePointer<Float>, _ D: Int,
    grad: UnsafeMutablePointer<Float>
  ) -> Double {
    var pp = 0.0
    var zz = 0.0
    var pz = 0.0
    for j in 0..<D {
      let a = Double(p[j])
      let b = Double(z[j])
      pp += a * a
      zz += b * b
      pz += a * b
    }
    let np = max(pp.squareRoot(), Double(normEps))
    let nz = max(zz.squareRoot(), Double(normEps))
    let c = pz / (np * nz)
    for j in 0..<D {
      grad[j] = Float((Double(z[j]) / nz - Double(p[j]) / np * c) / np)
    }
    return c
  }
}
