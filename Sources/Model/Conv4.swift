/// The `conv4` encoder (DESIGN.md): 4 × [Conv3×3 pad 1 (bias) → norm → ReLU → MaxPool 2],
/// then flatten. Channels `inChannels → width → width → width → width`; on 28×28 the maps are
/// 14, 7, 3, 1, so the output is `[N, width, 1, 1]` and the pre-pool map (after block 4's
/// ReLU) is `width × 3 × 3` = 576 for width 64.
///
/// With BatchNorm, blocks 1–3 run norm → ReLU → pool as one layer (`BatchNorm.fusePool`:
/// neither the BN output nor x̂ is stored; the same values as the three layers).
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
  /// Blocks whose `BatchNorm` also applies the ReLU and the pooling (`fusePool`): blocks 1–3
  /// when the norm is a BatchNorm with the fused ReLU (block 4 keeps its pre-pool map).
  private let normPools: [Bool]
  /// Block 1 as one pass that never stores its convolution's output (`FusedConvBlock`), in
  /// training where it applies; `stemRan` says the last forward ran it.
  private let stem: FusedConvBlock?
  private var stemRan = false
  /// Zeros of the input's shape: backward's result after the fused block 1.
  private let inputGradient = Storage()
  /// Whether the last forward ran block 1 as one fused pass (training, no input gradient,
  /// BatchNorm, C kernels, an input of at most 4 channels).
  public var ranFusedFirstBlock: Bool { stemRan }
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
    normPools = norms.indices.map { i in i < 3 && (norms[i] as? BatchNorm)?.fusePool() == true }
    stem = (norms[0] as? BatchNorm).map { FusedConvBlock(conv: convs[0], bn: $0) }
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
    stemRan = false
    for i in 0..<4 {
      if i == 0, training, let stem, stem.applies(x.shape) {
        h = try stem.forward(x)
        stemRan = true
        onForward?(convOffsets[0])
        continue
      }
      h = try convs[i].forward(h, training: training)
      h = try norms[i].forward(h, training: training)
      if !normPools[i] {
        if let r = relus[i] { h = try r.forward(h, training: training) }
        if i == 3 { prePoolFeatures = h }
        h = try pools[i].forward(h, training: training)
      }
      onForward?(convOffsets[i])
    }
    return try flatten.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = try flatten.backward(dy)
    for i in (0..<4).reversed() {
      if i == 0, stemRan, let stem {
        try stem.backward(g)
        onBackward?(normOffsets[0])
        onBackward?(convOffsets[0])
        let s = stem.inputShape
        let dx = inputGradient.tensor(s)
        dx.data.update(repeating: 0, count: s.count)
        return dx
      }
      if !normPools[i] {
        g = try pools[i].backward(g)
        if let r = relus[i] { g = try r.backward(g) }
      }
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
