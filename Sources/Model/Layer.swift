/// A layer with an explicit backward pass.
///
/// `forward` returns a view of an output the layer owns; `backward` takes the gradient of
/// the loss with respect to that output and returns the gradient with respect to the input
/// (also layer-owned). Parameter gradients **accumulate** (`+=`) into the arena's gradient
/// buffer, so zeroing all gradients is one fill. Both may throw because sync BatchNorm calls
/// a `Collective`.
public protocol Layer: AnyObject {
  func forward(_ x: Tensor, training: Bool) throws -> Tensor
  func backward(_ dy: Tensor) throws -> Tensor
}

extension Layer {
  public func callAsFunction(_ x: Tensor, training: Bool = true) throws -> Tensor {
    try forward(x, training: training)
  }
}

/// Layers applied in order; backward runs them in reverse.
public final class Sequential: Layer {
  public let layers: [Layer]

  public init(_ layers: [Layer]) { self.layers = layers }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x
    for l in layers { h = try l.forward(h, training: training) }
    return h
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = dy
    for l in layers.reversed() { g = try l.backward(g) }
    return g
  }
}
