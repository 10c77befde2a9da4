/// `y = max(x, 0)`. Backward passes `dy` where the output is positive (PyTorch's
/// `threshold_backward`: zero gradient at exactly 0).
public final class ReLU: Layer {
  /// [N, C, H, W]: the output, also the mask for backward.
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  private var output: Tensor?

  public init() {}

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let y = out.tensor(x.shape)
    for i in 0..<x.count { y.data[i] = max(x.data[i], 0) }
    output = y
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let y = output else { preconditionFailure("ReLU: backward before forward") }
    precondition(dy.shape == y.shape, "ReLU: dy \(dy.shape), expected \(y.shape)")
    let dx = dInput.tensor(y.shape)
    for i in 0..<y.count { dx.data[i] = y.data[i] > 0 ? dy.data[i] : 0 }
    return dx
  }
}
