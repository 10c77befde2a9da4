/// The `conv6` encoder of the SSL notebook (DESIGN.md): 3×3 convolutions with padding 1 and
/// bias, `C → 32 → Hardtanh → 32 → pool → 64 → Hardtanh → 64 → pool → 512 → pool`, then
/// flatten: on 28×28 the pooled maps are 14, 7 and 3, so the output is 512·3·3 = 4608-d and
/// the pre-pool map (the last convolution's output) 512×7×7. No normalisation layers.
///
/// Names follow PyTorch's `nn.Sequential` indices under `prefix`: convolutions `.0 .2 .4 .6 .8`
/// (Hardtanh at `.1 .5`, pools at `.3 .7 .9` hold no parameters).
public final class Conv6: Encoder, ProgressHooks {
  public let featureDim: Int
  public let prePoolDim: Int
  public private(set) var prePoolFeatures: Tensor?
  /// The side of the map after each pool (14, 7, 3 on 28×28): what a mirrored decoder undoes.
  public let pooledSizes: [Int]
  public let inChannels: Int

  /// Layer `i` of the sequence (index as in the names).
  private let layers: [Layer]
  private let convs: [(index: Int, conv: Conv2d, offset: Int)]
  private let flatten = Flatten()
  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  public init(arena: ParameterArena, prefix: String, inChannels: Int = 1, inputSize: Int = 28) {
    precondition(inputSize >= 8, "conv6 needs inputs of at least 8×8, got \(inputSize)")
    self.inChannels = inChannels
    var layers: [Layer] = []
    var convs: [(Int, Conv2d, Int)] = []
    func conv(_ cin: Int, _ cout: Int) {
      let offset = arena.parameterCount
      let c = Conv2d(
        arena: arena, name: "\(prefix).\(layers.count)", inChannels: cin, outChannels: cout, kernel: 3, stride: 1,
        padding: 1, bias: true)
      convs.append((layers.count, c, offset))
      layers.append(c)
    }
    conv(inChannels, 32)
    layers.append(Hardtanh())
    conv(32, 32)
    layers.append(MaxPool2d(kernel: 2, stride: 2))
    conv(32, 64)
    layers.append(Hardtanh())
    conv(64, 64)
    layers.append(MaxPool2d(kernel: 2, stride: 2))
    conv(64, 512)
    layers.append(MaxPool2d(kernel: 2, stride: 2))
    self.layers = layers
    self.convs = convs
    pooledSizes = [inputSize / 2, inputSize / 4, inputSize / 8]
    featureDim = 512 * pooledSizes[2] * pooledSizes[2]
    prePoolDim = 512 * pooledSizes[1] * pooledSizes[1]
  }

  public var computesInputGradient: Bool {
    get { convs[0].conv.computesInputGradient }
    set { convs[0].conv.computesInputGradient = newValue }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x
    for (i, l) in layers.enumerated() {
      h = try l.forward(h, training: training)
      if i == 8 { prePoolFeatures = h }
      if let c = convs.first(where: { $0.index == i }) { onForward?(c.offset) }
    }
    return try flatten.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = try flatten.backward(dy)
    for (i, l) in layers.enumerated().reversed() {
      g = try l.backward(g)
      if let c = convs.first(where: { $0.index == i }) { onBackward?(c.offset) }
    }
    return g
  }

  // MARK: Stages (layer-wise training)

  /// The three stages a layer-wise autoencoder trains one at a time, as ranges of layer
  /// indices: `conv → Hardtanh → conv → pool` (0..<4), the same at 64 channels (4..<8), and
  /// `conv 512 → pool` (8..<10). Each halves the side; `Conv6Decoder` mirrors each.
  public static let stages = [0..<4, 4..<8, 8..<10]

  /// The parameter names of stage `k` (its convolutions' weights and biases).
  public func parameterNames(stage k: Int) -> Set<String> {
    Set(convs.filter { Self.stages[k].contains($0.index) }.flatMap { [$0.conv.name + ".weight", $0.conv.name + ".bias"] })
  }

  /// Runs the layers of `stages` (a range of stage numbers) on `x` — the input for stage 0,
  /// else the previous stage's output map — and returns the last one's map `[N, C, h, h]`
  /// (not flattened). Valid until the next forward through those layers.
  public func forward(_ x: Tensor, stages: Range<Int>, training: Bool) throws -> Tensor {
    guard let first = stages.first, let last = stages.last else { return x }
    var h = x
    for i in Self.stages[first].lowerBound..<Self.stages[last].upperBound {
      h = try layers[i].forward(h, training: training)
      if i == 8 { prePoolFeatures = h }
      if let c = convs.first(where: { $0.index == i }) { onForward?(c.offset) }
    }
    return h
  }

  /// Backward through stage `k` alone (after `forward(_:stages:training:)` ran it with
  /// training on): accumulates its parameters' gradients and returns the gradient of its input.
  /// No other stage's gradient is touched.
  public func backward(_ dy: Tensor, stage k: Int) throws -> Tensor {
    var g = dy
    for i in Self.stages[k].reversed() {
      g = try layers[i].backward(g)
      if let c = convs.first(where: { $0.index == i }) { onBackward?(c.offset) }
    }
    return g
  }

  /// Whether stage `k`'s first convolution computes its input gradient (the frozen stages
  /// below never use it).
  public func setComputesInputGradient(_ on: Bool, stage k: Int) {
    convs.first { $0.index == Self.stages[k].lowerBound }?.conv.computesInputGradient = on
  }
}

/// A decoder that mirrors `Conv6` back to the input: `512 → ConvT ↑ 64 → Hardtanh → 64 →
/// ConvT ↑ 32 → Hardtanh → 32 → ConvT ↑ C` (3×3 convolutions pad 1; each transposed
/// convolution doubles the side with stride 2 and padding 1, its kernel `t − 2h + 4` chosen to
/// land exactly on the encoder's size `t`: 5 for 3 → 7, 4 for 7 → 14 and 14 → 28). Input: the
/// encoder's `[N, 512·s·s]` output; output: `[N, C, H, W]`, unbounded (it regresses the
/// normalised input). Names `prefix.0` … `prefix.6`.
public final class Conv6Decoder: Layer, ProgressHooks {
  private let layers: [Layer]
  private let offsets: [(index: Int, offset: Int)]
  private let bottom: Int
  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  public init(arena: ParameterArena, prefix: String, mirroring encoder: Conv6, outputSize: Int) {
    let sizes = [outputSize] + encoder.pooledSizes  // 28, 14, 7, 3
    bottom = sizes[3]
    var layers: [Layer] = []
    var offsets: [(Int, Int)] = []
    func up(_ cin: Int, _ cout: Int, from h: Int, to t: Int) {
      offsets.append((layers.count, arena.parameterCount))
      layers.append(
        ConvTranspose2d(
          arena: arena, name: "\(prefix).\(layers.count)", inChannels: cin, outChannels: cout, kernel: t - 2 * h + 4,
          stride: 2, padding: 1))
    }
    func conv(_ c: Int) {
      offsets.append((layers.count, arena.parameterCount))
      layers.append(
        Conv2d(arena: arena, name: "\(prefix).\(layers.count)", inChannels: c, outChannels: c, kernel: 3, stride: 1, padding: 1, bias: true))
    }
    up(512, 64, from: sizes[3], to: sizes[2])
    layers.append(Hardtanh())
    conv(64)
    up(64, 32, from: sizes[2], to: sizes[1])
    layers.append(Hardtanh())
    conv(32)
    up(32, encoder.inChannels, from: sizes[1], to: sizes[0])
    self.layers = layers
    self.offsets = offsets
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let maps = Tensor(x.data, Shape(x.shape.n, 512, bottom, bottom))
    guard x.shape.perSample == maps.shape.perSample else {
      throw LayerShapeError(layer: "conv6 decoder", reason: "input \(x.shape), expected \(512 * bottom * bottom) features")
    }
    var h = maps
    for (i, l) in layers.enumerated() {
      h = try l.forward(h, training: training)
      if let o = offsets.first(where: { $0.index == i }) { onForward?(o.offset) }
    }
    return h
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = dy
    for (i, l) in layers.enumerated().reversed() {
      g = try l.backward(g)
      if let o = offsets.first(where: { $0.index == i }) { onBackward?(o.offset) }
    }
    return Tensor(g.data, Shape(g.shape.n, g.shape.perSample))
  }

  // MARK: Stages (layer-wise training)

  /// The layers that mirror encoder stage `k` (`Conv6.stages`), as ranges of layer indices:
  /// stage 2 `ConvT 512 → 64` (0..<1), stage 1 `Hardtanh → conv 64 → ConvT 64 → 32` (1..<4),
  /// stage 0 `Hardtanh → conv 32 → ConvT 32 → C` (4..<7). Stage k's decoder maps stage k's
  /// output back to stage k's input (its shape and channels).
  public static let stages = [4..<7, 1..<4, 0..<1]

  /// The parameter names of the layers mirroring stage `k`.
  public func parameterNames(stage k: Int, prefix: String) -> Set<String> {
    Set(Self.stages[k].filter { i in offsets.contains { $0.index == i } }.flatMap { ["\(prefix).\($0).weight", "\(prefix).\($0).bias"] })
  }

  /// Stage `k`'s mirror on the encoder stage's output map `[N, C_k, h, h]` (a flat
  /// `[N, 512·s·s]` for the last stage): returns a map shaped like the stage's input.
  public func forward(_ x: Tensor, stage k: Int, training: Bool) throws -> Tensor {
    var h = k == 2 ? Tensor(x.data, Shape(x.shape.n, 512, bottom, bottom)) : x
    for i in Self.stages[k] {
      h = try layers[i].forward(h, training: training)
      if let o = offsets.first(where: { $0.index == i }) { onForward?(o.offset) }
    }
    return h
  }

  /// Backward through stage `k`'s mirror alone; returns the gradient of its input map.
  public func backward(_ dy: Tensor, stage k: Int) throws -> Tensor {
    var g = dy
    for i in Self.stages[k].reversed() {
      g = try layers[i].backward(g)
      if let o = offsets.first(where: { $0.index == i }) { onBackward?(o.offset) }
    }
    return g
  }
}
