/// A multilayer perceptron head: `Linear → [norm] → [ReLU]` per layer, on `[N, D, 1, 1]`
/// rows. Serves SimSiam's projector (3 layers, norm after each, ReLU after the first two) and
/// predictor (bottleneck `d → d/4 → d`), and the transformation-prediction head.
///
/// Names follow `nn.Sequential` indices under `prefix`, counting a ReLU as a module:
/// `"\(prefix).0"` (Linear), `"\(prefix).1"` (norm), `"\(prefix).3"` (next Linear), …
/// Reports backward progress per layer with parameters (`ProgressHooks`).
public final class MLPHead: Layer, ProgressHooks {
  /// One layer: its output width, whether a norm and a ReLU follow the Linear.
  public struct Spec: Sendable {
    public var out: Int
    public var norm: Bool
    public var relu: Bool
    public init(_ out: Int, norm: Bool, relu: Bool) {
      self.out = out
      self.norm = norm
      self.relu = relu
    }
  }

  public let inFeatures: Int
  public let outFeatures: Int
  private let layers: [Layer]
  /// First arena offset of each of `layers` (nil: no parameters).
  private let offsets: [Int?]

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  public init(
    arena: ParameterArena, prefix: String, inFeatures: Int, specs: [Spec], bias: Bool = true,
    makeNorm: NormFactory
  ) rethrows {
    precondition(!specs.isEmpty)
    var layers: [Layer] = []
    var offsets: [Int?] = []
    var d = inFeatures
    for s in specs {
      offsets.append(arena.parameterCount)
      layers.append(
        Linear(arena: arena, name: "\(prefix).\(layers.count)", inFeatures: d, outFeatures: s.out, bias: bias))
      if s.norm {
        let o = arena.parameterCount
        layers.append(try makeNorm("\(prefix).\(layers.count)", s.out))
        offsets.append(arena.parameterCount > o ? o : nil)
      }
      if s.relu {
        layers.append(ReLU())
        offsets.append(nil)
      }
      d = s.out
    }
    self.inFeatures = inFeatures
    outFeatures = d
    self.layers = layers
    self.offsets = offsets
  }

  /// SimSiam's projector (Chen & He 2021): `Linear → BN → ReLU` twice, then `Linear → BN`.
  public static func simSiamProjector(
    arena: ParameterArena, prefix: String, inFeatures: Int, dim: Int, bias: Bool = true,
    makeNorm: NormFactory
  ) rethrows -> MLPHead {
    try MLPHead(
      arena: arena, prefix: prefix, inFeatures: inFeatures,
      specs: [.init(dim, norm: true, relu: true), .init(dim, norm: true, relu: true), .init(dim, norm: true, relu: false)],
      bias: bias, makeNorm: makeNorm)
  }

  /// SimSiam's predictor, a bottleneck: `Linear(d, h) → BN → ReLU → Linear(h, d)`.
  public static func simSiamPredictor(
    arena: ParameterArena, prefix: String, dim: Int, hidden: Int, bias: Bool = true,
    makeNorm: NormFactory
  ) rethrows -> MLPHead {
    try MLPHead(
      arena: arena, prefix: prefix, inFeatures: dim,
      specs: [.init(hidden, norm: true, relu: true), .init(dim, norm: false, relu: false)],
      bias: bias, makeNorm: makeNorm)
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x.reshaped(Shape(x.shape.n, x.shape.perSample))
    for (l, o) in zip(layers, offsets) {
      h = try l.forward(h, training: training)
      if let o { onForward?(o) }
    }
    return h
  }

  /// - Returns: dx in the forward input's row layout, `[N, inFeatures, 1, 1]`.
  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = dy
    for (l, o) in zip(layers, offsets).reversed() {
      g = try l.backward(g)
      if let o { onBackward?(o) }
    }
    return g
  }
}

extension MLPHead: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    var total = 0
    var s = Shape(input.n, input.perSample)
    for case let l as Linear in layers {
      let (f, y) = l.forwardFLOPs(s)
      total += f
      s = y
    }
    return (total, s)
  }
}
