import Foundation

/// Softmax cross-entropy, mean over rows, with class-index labels (PyTorch
/// `F.cross_entropy(logits, labels)`):
///
///     L = (1/N) Σ_i [ log Σ_k exp(x_ik) − x_i,y_i ]
///     ∂L/∂x_ik = (softmax(x_i)_k − [k = y_i]) / N
///
/// - Parameters:
///   - dlogits: [N, K] written (overwritten, not accumulated) with ∂L/∂logits; `nil` skips it.
///   - logits: [N, K].
///   - labels: [N] class indices in `0..<K`.
///   - n: N rows; `k`: K classes.
/// - Returns: L.
/// - Throws: `LayerShapeError` when a label is out of range or a size is not positive.
public func softmaxCrossEntropy(
  _ dlogits: UnsafeMutablePointer<Float>?, _ logits: UnsafePointer<Float>,
  _ labels: UnsafePointer<Int>, _ n: Int, _ k: Int
) throws -> Float {
  guard n > 0, k > 0 else {
    throw LayerShapeError(
      layer: "softmaxCrossEntropy", reason: "sizes N=\(n) K=\(k) must be positive")
  }
  for i in 0..<n where labels[i] < 0 || labels[i] >= k {
    throw LayerShapeError(
      layer: "softmaxCrossEntropy", reason: "label \(labels[i]) of row \(i) is not in 0..<\(k)")
  }
  var total = 0.0
  let invN = 1 / Double(n)
  for i in 0..<n {
    let x = logits + i * k
    let (mx, sum) = logSumExpParts(x, k)
    total += log(sum) + Double(mx) - Double(x[labels[i]])
    if let d = dlogits {
      let di = d + i * k
      for j in 0..<k { di[j] = Float(exp(Double(x[j] - mx)) / sum * invN) }
      di[labels[i]] -= Float(invN)
    }
  }
  return Float(total * invN)
}

/// Softmax cross-entropy against soft targets (probabilities, e.g. label smoothing or
/// mixup; PyTorch `F.cross_entropy(logits, probs)`), mean over rows:
///
///     L = −(1/N) Σ_i Σ_k t_ik · log softmax(x_i)_k
///     ∂L/∂x_ik = (softmax(x_i)_k·Σ_j t_ij − t_ik) / N
///
/// - Parameters:
///   - dlogits: [N, K] overwritten with ∂L/∂logits; `nil` skips it.
///   - logits: [N, K].
///   - targets: [N, K] (rows normally sum to 1).
/// - Returns: L.
public func softmaxCrossEntropy(
  _ dlogits: UnsafeMutablePointer<Float>?, _ logits: UnsafePointer<Float>,
  targets: UnsafePointer<Float>, _ n: Int, _ k: Int
) throws -> Float {
  guard n > 0, k > 0 else {
    throw LayerShapeError(
      layer: "softmaxCrossEntropy", reason: "sizes N=\(n) K=\(k) must be positive")
  }
  var total = 0.0
  let invN = 1 / Double(n)
  for i in 0..<n {
    let x = logits + i * k
    let t = targets + i * k
    let (mx, sum) = logSumExpParts(x, k)
    let lse = log(sum) + Double(mx)
    var tSum = 0.0
    for j in 0..<k {
      total += Double(t[j]) * (lse - Double(x[j]))
      tSum += Double(t[j])
    }
    if let d = dlogits {
      let di = d + i * k
      for j in 0..<k {
        di[j] = Float((exp(Double(x[j] - mx)) / sum * tSum - Double(t[j])) * invN)
      }
    }
  }
  return Float(total * invN)
}

/// (max_k x_k, Σ_k exp(x_k − max)) for a stable log-sum-exp of one row.
@inline(__always)
func logSumExpParts(_ x: UnsafePointer<Float>, _ k: Int) -> (Float, Double) {
  var mx = -Float.infinity
  for j in 0..<k { mx = max(mx, x[j]) }
  var sum = 0.0
  for j in 0..<k { sum += exp(Double(x[j] - mx)) }
  return (mx, sum)
}
