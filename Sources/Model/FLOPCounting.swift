/// Counted arithmetic of a forward pass, for benchmarks: convolutions and linear layers count
/// 2 FLOPs per multiply-accumulate; normalisation, activations, pooling and losses are
/// memory-bound and not counted. A training step (forward + backward: dX and dW) is 3× the
/// forward.
public protocol FLOPCounting {
  /// - Returns: forward FLOPs for an input of shape `input`, and the output shape.
  func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape)
}

extension Conv2d: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    let y = outputShape(input)
    return (2 * y.count * inChannels * kernel * kernel, y)
  }
}

extension Linear: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    (2 * input.n * inFeatures * outFeatures, Shape(input.n, outFeatures))
  }
}
