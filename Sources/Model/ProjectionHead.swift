/// The SimCLR projection head (DESIGN.md): Linear(d, hidden) → norm (BN1d) → ReLU →
/// Linear(hidden, out), output `[N, outFeatures, 1, 1]`. Names follow `nn.Sequential`
/// indices under `prefix`: `"\(prefix).0"`, `"\(prefix).1"` (norm), `"\(prefix).3"`.
public final class ProjectionHead: Layer {
  public let inFeatures: Int
  public let hidden: Int
  public let outFeatures: Int
  private let layers: Sequential

  public init(
    arena: ParameterArena, prefix: String, inFeatures: Int, hidden: Int? = nil,
    outFeatures: Int = 128, makeNorm: NormFactory
  ) rethrows {
    let hidden = hidden ?? inFeatures
    self.inFeatures = inFeatures
    self.hidden = hidden
    self.outFeatures = outFeatures
    layers = Sequential([
      Linear(arena: arena, name: "\(prefix).0", inFeatures: inFeatures, outFeatures: hidden),
      try makeNorm("\(prefix).1", hidden),
      ReLU(),
      Linear(arena: arena, name: "\(prefix).3", inFeatures: hidden, outFeatures: outFeatures),
    ])
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    try layers.forward(x, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor { try layers.backward(dy) }
}

extension ProjectionHead: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    var total = 0
    var s = input
    for case let l as Linear in layers.layers {
      let (f, y) = l.forwardFLOPs(s)
      total += f
      s = y
    }
    return (total, s)
  }
}
