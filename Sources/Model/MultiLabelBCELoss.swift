import Foundation

/// Binary cross-entropy with logits (`bceWithLogits`) averaged over the **global** batch:
/// `L = Σ_ranks Σ_{i,k} ℓ_ik / (N·K)`, N the global row count, so the gradient of each rank's
/// rows is its share of the global-mean loss and W ranks equal one.
///
/// Collective calls: forward one `allReduceSum` (Double, 2 values: Σℓ and the element count);
/// backward none.
public final class MultiLabelBCELoss {
  public let collective: Collective
  /// [N, K] ∂L/∂logits.
  private let dlogits = Storage()
  private let reduction = UnsafeMutablePointer<Double>.allocate(capacity: 2)
  private var shape = Shape(0, 0)
  private var ready = false

  public init(collective: Collective) {
    self.collective = collective
    reduction.initialize(repeating: 0, count: 2)
  }

  deinit { reduction.deallocate() }

  /// - Parameters:
  ///   - logits: [N, K] (this rank's rows).
  ///   - targets: [N, K] in [0, 1].
  /// - Returns: the global mean loss, the same on every rank.
  public func forward(_ logits: Tensor, targets: UnsafePointer<Float>) throws -> Float {
    let n = logits.shape.n
    let k = logits.shape.perSample
    shape = Shape(n, k)
    let d = dlogits.ensure(n * k)
    let localMean = try bceWithLogits(d, logits.data, targets, n, k)
    let localCount = Double(n * k)
    reduction[0] = Double(localMean) * localCount
    reduction[1] = localCount
    try collective.allReduceSum(reduction, count: 2)
    let scale = Float(localCount / reduction[1])
    if scale != 1 { for i in 0..<(n * k) { d[i] *= scale } }
    ready = true
    return Float(reduction[0] / reduction[1])
  }

  /// - Returns: ∂L/∂logits [N, K], owned by the loss.
  public func backward() throws -> Tensor {
    guard ready else {
      throw LayerShapeError(layer: "MultiLabelBCELoss", reason: "backward needs a forward first")
    }
    return Tensor(dlogits.data, shape)
  }
}
