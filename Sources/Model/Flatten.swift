/// `[N, C, H, W]` → `[N, C·H·W, 1, 1]` (PyTorch's `nn.Flatten`). Zero-copy: forward returns
/// the input's memory with the new shape and backward returns `dy`'s memory with the input's
/// shape, so both views live as long as their owners' outputs.
public final class Flatten: Layer {
  private var inputShape: Shape?

  public init() {}

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    inputShape = x.shape
    return x.reshaped(Shape(x.shape.n, x.shape.perSample))
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let xs = inputShape else { preconditionFailure("Flatten: backward before forward") }
    return dy.reshaped(xs)
  }
}
