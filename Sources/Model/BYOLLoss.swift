/// BYOL's symmetric loss (Grill et al. 2020) over the **global** batch, with the target
/// network's projections as constants:
///
///     L = (1/N) Σ_i (2 − 2cos(p1_i, t2_i)) + (1/N) Σ_i (2 − 2cos(p2_i, t1_i))
///
/// (N = ΣB over ranks). It is SimSiam's negative cosine `S = −(1/2N) Σ_i [cos(p1_i, t2_i) +
/// cos(p2_i, t1_i)]` rescaled, `L = 4 + 4S`, so it is computed by `SimSiamLoss` (one
/// `allReduceSum` of 2 Doubles in forward, none in backward) and the gradient is 4·∂S/∂p.
public final class BYOLLoss {
  let cosine: SimSiamLoss
  /// [B, D] ∂L/∂p1, ∂L/∂p2.
  private let dp1 = Storage()
  private let dp2 = Storage()

  public init(collective: Collective) { cosine = SimSiamLoss(collective: collective) }

  /// - Parameters:
  ///   - p1, p2: [B, D] online predictions of views 1 and 2.
  ///   - t1, t2: [B, D] target projections of views 1 and 2 (no gradient).
  /// - Returns: L ∈ [0, 8], the same on every rank.
  public func forward(p1: Tensor, p2: Tensor, t1: Tensor, t2: Tensor) throws -> Float {
    4 + 4 * (try cosine.forward(p1: p1, p2: p2, z1: t1, z2: t2))
  }

  /// - Returns: (dp1, dp2) [B, D], the gradient of the global loss with respect to this rank's
  ///   predictions; owned by the loss.
  public func backward() throws -> (dp1: Tensor, dp2: Tensor) {
    let (g1, g2) = try cosine.backward()
    let o1 = dp1.tensor(g1.shape)
    let o2 = dp2.tensor(g2.shape)
    for i in 0..<g1.count {
      o1.data[i] = 4 * g1.data[i]
      o2.data[i] = 4 * g2.data[i]
    }
    return (o1, o2)
  }
}
