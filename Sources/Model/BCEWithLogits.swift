import Foundation

/// Binary cross-entropy with logits, mean over all N·K elements (PyTorch
/// `F.binary_cross_entropy_with_logits`, multi-label heads):
///
///     L = (1/NK) Σ max(x, 0) − x·t + log(1 + exp(−|x|)),     ∂L/∂x = (σ(x) − t) / NK
///
/// The max/abs form is the stable one: no exp of a large positive number.
///
/// - Parameters:
///   - dlogits: [N, K] overwritten (not accumulated) with ∂L/∂logits; `nil` skips it.
///   - logits: [N, K].
///   - targets: [N, K] in [0, 1].
///   - n: N rows; `k`: K labels per row.
/// - Returns: L.
public func bceWithLogits(
  _ dlogits: UnsafeMutablePointer<Float>?, _ logits: UnsafePointer<Float>,
  _ targets: UnsafePointer<Float>, _ n: Int, _ k: Int
) throws -> Float {
  guard n > 0, k > 0 else {
    throw LayerShapeError(layer: "bceWithLogits", reason: "sizes N=\(n) K=\(k) must be positive")
  }
  let count = n * k
  let inv = 1 / Double(count)
  var total = 0.0
  for i in 0..<count {
    let x = Double(logits[i])
    let t = Double(targets[i])
    total += max(x, 0) - x * t + log1p(exp(-abs(x)))
    if let d = dlogits {
      let sig = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
      d[i] = Float((sig - t) * inv)
    }
  }
  return Float(total * inv)
}
