/// The `resnet18` encoder with the CIFAR stem (DESIGN.md): Conv3×3 64 stride 1 (no bias) →
/// norm → ReLU; stages (64, s1), (128, s2), (256, s2), (512, s2) of two `BasicBlock`s each,
/// projection shortcuts where the shape changes; global average pool → `[N, 512, 1, 1]`.
///
/// torchvision names under `prefix`: `conv1`, `bn1`, `layer{1…4}.{0,1}.conv1`, `….bn1`,
/// `….conv2`, `….bn2`, `layer{2,3,4}.0.downsample.{0,1}`.
public final class ResNet18: Encoder, ProgressHooks {
  public let featureDim = 512
  public let prePoolDim: Int
  public private(set) var prePoolFeatures: Tensor?

  private let conv1: Conv2d
  private let bn1: Layer
  /// nil when `bn1` is a `BatchNorm` that applies the ReLU itself.
  private let relu: ReLU?
  /// [layer1.0, layer1.1, layer2.0, …, layer4.1]
  public let blocks: [BasicBlock]
  private let pool = GlobalAvgPool()
  /// First arena offset of the stem's norm and of each block (the stem conv starts at
  /// `stemOffset`).
  private let stemOffset: Int
  private let stemNormOffset: Int
  private let blockOffsets: [Int]

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  /// - Parameters:
  ///   - inputSize: the height (and, without `inputWidth`, the width) of the inputs, which fix
  ///     `prePoolDim` (512 × 4 × 4 on 28×28).
  ///   - inputWidth: the width of non-square inputs (log-mel spectrograms, nMels × frames).
  public init(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, inputSize: Int = 28,
    inputWidth: Int? = nil, makeNorm: NormFactory
  ) rethrows {
    stemOffset = arena.parameterCount
    conv1 = Conv2d(
      arena: arena, name: "\(prefix).conv1", inChannels: inChannels, outChannels: 64, kernel: 3,
      stride: 1, padding: 1, bias: false)
    stemNormOffset = arena.parameterCount
    bn1 = try makeNorm("\(prefix).bn1", 64)
    relu = (bn1 as? BatchNorm)?.fuseReLU() == true ? nil : ReLU()
    var blocks: [BasicBlock] = []
    var blockOffsets: [Int] = []
    var channels = 64
    var size = inputSize
    var columns = inputWidth ?? inputSize
    for (stage, (width, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].enumerated() {
      for b in 0..<2 {
        let s = b == 0 ? stride : 1
        blockOffsets.append(arena.parameterCount)
        blocks.append(
          try BasicBlock(
            arena: arena, prefix: "\(prefix).layer\(stage + 1).\(b)", inChannels: channels,
            outChannels: width, stride: s, makeNorm: makeNorm))
        channels = width
        size = Conv2dReference.outputSize(size, kernel: 3, stride: s, padding: 1)
        columns = Conv2dReference.outputSize(columns, kernel: 3, stride: s, padding: 1)
      }
    }
    self.blocks = blocks
    self.blockOffsets = blockOffsets
    prePoolDim = 512 * size * columns
  }

  /// `false`: backward skips the input gradient of the stem convolution (returns zeros);
  /// training needs none, as the input is data.
  public var computesInputGradient: Bool {
    get { conv1.computesInputGradient }
    set { conv1.computesInputGradient = newValue }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = try conv1.forward(x, training: training)
    h = try bn1.forward(h, training: training)
    if let relu { h = try relu.forward(h, training: training) }
    onForward?(stemOffset)
    for (i, b) in blocks.enumerated() {
      h = try b.forward(h, training: training)
      onForward?(blockOffsets[i])
    }
    prePoolFeatures = h
    return try pool.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = try pool.backward(dy)
    // A block's projection shortcut is registered last but runs backward last, so only a
    // whole block's end makes its range final.
    for i in blocks.indices.reversed() {
      g = try blocks[i].backward(g)
      onBackward?(blockOffsets[i])
    }
    if let relu { g = try relu.backward(g) }
    g = try bn1.backward(g)
    onBackward?(stemNormOffset)
    let dx = try conv1.backward(g)
    onBackward?(stemOffset)
    return dx
  }
}

extension ResNet18: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    var (total, s) = conv1.forwardFLOPs(input)
    for b in blocks {
      let (f, y) = b.forwardFLOPs(s)
      total += f
      s = y
    }
    return (total, Shape(s.n, s.c))
  }
}
