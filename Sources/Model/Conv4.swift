/// The `conv4` encoder (DESIGN.md): 4 × [Conv3×3 pad 1 (bias) → norm → ReLU → MaxPool 2],
/// then flatten. Channels `inChannels → width → width → width → width`; on 28×28 the maps are
/// 14, 7, 3, 1, so the output is `[N, width, 1, 1]` and the pre-pool map (after block 4's
/// ReLU) is `width × 3 × 3` = 576 for width 64.
///
/// Names follow PyTorch's `nn.Sequential` indices under `prefix`: block `i`'s convolution is
/// `"\(prefix).\(4i)"`, its norm `"\(prefix).\(4i + 1)"` (ReLU and pool hold no parameters).
public final class Conv4: Encoder, ProgressHooks {
  public let featureDim: Int
  public let prePoolDim: Int
  public private(set) var prePoolFeatures: Tensor?

  private let convs: [Conv2d]
  private let norms: [Layer]
  /// nil where the norm is a `BatchNorm` that applies the ReLU itself (`fusedReLU`).
  private let relus: [ReLU?]
  private let pools: [MaxPool2d]
  private let flatten = Flatten()
  /// First arena offset of block `i`'s convolution and of its norm.
  private let convOffsets: [Int]
  private let normOffsets: [Int]

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  /// - Parameters:
  ///   - inputSize: the height and width of the inputs, which fix `featureDim`/`prePoolDim`.
  ///   - inputWidth: the width when it differs from the height (log-mel spectrograms).
  public init(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, width: Int = 64,
    inputSize: Int = 28, inputWidth: Int? = nil, makeNorm: NormFactory
  ) rethrows {
    var convs: [Conv2d] = []
    var norms: [Layer] = []
    var convOffsets: [Int] = []
    var normOffsets: [Int] = []
    var size = inputSize
    var sizeW = inputWidth ?? inputSize
    var prePool = 0
    for i in 0..<4 {
      convOffsets.append(arena.parameterCount)
      convs.append(
        Conv2d(
          arena: arena, name: "\(prefix).\(4 * i)", inChannels: i == 0 ? inChannels : width,
          outChannels: width, kernel: 3, stride: 1, padding: 1, bias: true))
      normOffsets.append(arena.parameterCount)
      norms.append(try makeNorm("\(prefix).\(4 * i + 1)", width))
      if i == 3 { prePool = width * size * sizeW }
      size /= 2
      sizeW /= 2
    }
    precondition(size >= 1 && sizeW >= 1, "conv4 needs inputs of at least 16×16, got \(inputSize)×\(inputWidth ?? inputSize)")
    self.convs = convs
    self.norms = norms
    self.convOffsets = convOffsets
    self.normOffsets = normOffsets
    relus = norms.map { ($0 as? BatchNorm)?.fuseReLU() == true ? nil : ReLU() }
    pools = (0..<4).map { _ in MaxPool2d(kernel: 2, stride: 2) }
    featureDim = width * size * sizeW
    prePoolDim = prePool
  }

  /// `false`: backward skips the input gradient of the first convolution (returns zeros);
  /// training needs none, as the input is data.
  public var computesInputGradient: Bool {
    get { convs[0].computesInputGradient }
    set { convs[0].computesInputGradient = newValue }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x
    for i in 0..<4 {
      h = try convs[i].forward(h, training: training)
      h = try norms[i].forward(h, training: training)
      if let r = relus[i] { h = try r.forward(h, training: training) }
      if i == 3 { prePoolFeatures = h }
      h = try pools[i].forward(h, training: training)
      onForward?(convOffsets[i])
    }
    return try flatten.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = try flatten.backward(dy)
    for i in (0..<4).reversed() {
      g = try pools[i].backward(g)
      if let r = relus[i] { g = try r.backward(g) }
      g = try norms[i].backward(g)
      onBackward?(normOffsets[i])
      g = try convs[i].backward(g)
      onBackward?(convOffsets[i])
    }
    return g
  }
}

extension Conv4: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    var s = input
    var total = 0
    for i in 0..<4 {
      let (f, y) = convs[i].forwardFLOPs(s)
      total += f
      s = pools[i].outputShape(y)
    }
    return (total, Shape(s.n, s.perSample))
  }
}
