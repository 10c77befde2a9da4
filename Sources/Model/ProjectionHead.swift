/// The SimCLR projection head (DESIGN.md): Linear(d, hidden) → norm (BN1d) → ReLU →
/// Linear(hidden, out), output `[N, outFeatures, 1, 1]`. Names follow `nn.Sequential`
/// indices under `prefix`: `"\(prefix).0"`, `"\(prefix).1"` (norm), `"\(prefix).3"`.
/// With `depth` 3 (SimCLR v2's deeper head) a second hidden Linear(hidden, hidden) → norm →
/// ReLU comes before the last Linear: `.0`, `.1`, `.3`, `.4`, `.6`.
public final class ProjectionHead: Layer, ProgressHooks {
  public let inFeatures: Int
  public let hidden: Int
  public let outFeatures: Int
  /// Linear layers in the head (2: DESIGN.md's head).
  public let depth: Int
  private let layers: Sequential
  /// First arena offset of each of `layers` (nil for layers without parameters).
  private let offsets: [Int?]

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  public init(
    arena: ParameterArena, prefix: String, inFeatures: Int, hidden: Int? = nil,
    outFeatures: Int = 128, depth: Int = 2, makeNorm: NormFactory
  ) rethrows {
    precondition(depth >= 2, "a projection head has at least two Linear layers")
    let hidden = hidden ?? inFeatures
    self.inFeatures = inFeatures
    self.hidden = hidden
    self.outFeatures = outFeatures
    self.depth = depth
    var stack: [Layer] = []
    var starts: [Int?] = []
    for block in 0..<(depth - 1) {
      let o = arena.parameterCount
      stack.append(Linear(
        arena: arena, name: "\(prefix).\(3 * block)", inFeatures: block == 0 ? inFeatures : hidden,
        outFeatures: hidden))
      let oNorm = arena.parameterCount
      stack.append(try makeNorm("\(prefix).\(3 * block + 1)", hidden))
      stack.append(ReLU())
      // A norm without parameters (identity in tests) reports nothing new.
      starts += [o, arena.parameterCount > oNorm ? oNorm : nil, nil]
    }
    starts.append(arena.parameterCount)
    stack.append(Linear(
      arena: arena, name: "\(prefix).\(3 * (depth - 1))", inFeatures: hidden, outFeatures: outFeatures))
    layers = Sequential(stack)
    offsets = starts
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
