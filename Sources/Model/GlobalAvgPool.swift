/// Mean over the spatial positions of each channel: `[N, C, H, W]` → `[N, C, 1, 1]`
/// (PyTorch's `AdaptiveAvgPool2d(1)` + flatten). Backward spreads `dy / (H·W)` evenly.
public final class GlobalAvgPool: Layer {
  /// [N, C, 1, 1]
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  private var inputShape: Shape?

  public init() {}

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let y = out.tensor(Shape(x.shape.n, x.shape.c))
    let hw = x.shape.spatial
    let scale = 1 / Double(hw)
    for plane in 0..<(x.shape.n * x.shape.c) {
      let src = x.data + plane * hw
      var acc: Double = 0
      for p in 0..<hw { acc += Double(src[p]) }
      y.data[plane] = Float(acc * scale)
    }
    inputShape = x.shape
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let xs = inputShape else { preconditionFailure("GlobalAvgPool: backward before forward") }
    precondition(dy.count == xs.n * xs.c, "GlobalAvgPool: dy \(dy.shape), input was \(xs)")
    let dx = dInput.tensor(xs)
    let hw = xs.spatial
    let scale = 1 / Float(hw)
    for plane in 0..<(xs.n * xs.c) {
      (dx.data + plane * hw).update(repeating: dy.data[plane] * scale, count: hw)
    }
    return dx
  }
}
