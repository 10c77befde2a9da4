/// The SimCLR projection head (DESIGN.md): Linear(d, hidden) → norm (BN1d) → ReLU →
/// Linear(hidden, out), output `[N, outFeatures, 1, 1]`. Names follow `nn.Sequential`
/// indices under `prefix`: `"\(prefix).0"`, `"\(prefix).1"` (norm), `"\(prefix).3"`.
public final class ProjectionHead: Layer, ProgressHooks {
  public let inFeatures: Int
  public let hidden: Int
  public let outFeatures: Int
  private let layers: Sequential
  /// First arena offset of each of `layers` (nil for layers without parameters).
  private let offsets: [Int?]

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  public init(
    arena: ParameterArena, prefix: String, inFeatures: Int, hidden: Int? = nil,
    outFeatures: Int = 128, makeNorm: NormFactory
  ) rethrows {
    let hidden = hidden ?? inFeatures
    self.inFeatures = inFeatures
    self.hidden = hidden
    self.outFeatures = outFeatures
    let o0 = arena.parameterCount
    let first = Linear(arena: arena, name: "\(prefix).0", inFeatures: inFeatures, outFeatures: hidden)
    let o1 = arena.parameterCount
    let norm = try makeNorm("\(prefix).1", hidden)
    let o3 = arena.parameterCount
    let last = Linear(arena: arena, name: "\(prefix).3", inFeatures: hidden, outFeatures: outFeatures)
    layers = Sequential([first, norm, ReLU(), last])
    // A norm without parameters (identity in tests) reports nothing new.
    offsets = [o0, o3 > o1 ? o1 : nil, nil, o3]
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x
    for (l, o) in zip(layers.layers, offsets) {
      h = try l.forward(h, training: training)
      if let o { onForward?(o) }
    }
    return h
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = dy
    for (l, o) in zip(layers.layers, offsets).reversed() {
      g = try l.backward(g)
      if let o { onBackward?(o) }
    }
    return g
  }
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
