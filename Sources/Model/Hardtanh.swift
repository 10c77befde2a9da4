/// `y = min(max(x, minValue), maxValue)`, as PyTorch's `nn.Hardtanh` (the `conv6`
/// activation). Backward passes `dy` strictly inside `(minValue, maxValue)`, as PyTorch does.
public final class Hardtanh: Layer {
  public let minValue: Float
  public let maxValue: Float

  /// [N, C, H, W]
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  /// The forward input (owned by the previous layer).
  private var input: Tensor?

  public init(min minValue: Float = -1, max maxValue: Float = 1) {
    precondition(minValue < maxValue)
    self.minValue = minValue
    self.maxValue = maxValue
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let y = out.tensor(x.shape)
    for i in 0..<x.count { y.data[i] = min(max(x.data[i], minValue), maxValue) }
    input = x
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let x = input else { preconditionFailure("Hardtanh: backward before forward") }
    precondition(dy.shape == x.shape, "Hardtanh: dy \(dy.shape), expected \(x.shape)")
    let dx = dInput.tensor(x.shape)
    for i in 0..<x.count {
      let v = x.data[i]
      dx.data[i] = v > minValue && v < maxValue ? dy.data[i] : 0
    }
    return dx
  }
}
