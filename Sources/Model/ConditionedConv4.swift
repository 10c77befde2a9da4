/// `conv4` conditioned on an invariance vector `v ∈ [0, 1]^k` (amortised invariance learning,
/// Chavhan et al., ICLR 2023): `forward(x, v)` is differentiable in the weights and in `v`.
///
/// Block `i`: Conv3×3 pad 1 (bias) → BN → FiLM(m_i(v)) → ReLU → MaxPool 2, where the block's
/// hypernetwork `m_i(v) = Linear(H→2C)(ReLU(Linear(k→H)(v)))` gives per-channel scales and
/// shifts (`FiLM`: `x·(1 + γ) + β`). This is the "cheaper variant": the paper's
/// hypernetworks produce the convolution weights themselves, which with one `v` per sample
/// (keyed per sample, DESIGN invariant 6) would make every sample its own convolution — no
/// batched GEMM. FiLM after BN keeps the convolutions batched and costs
/// `4·(k·H + H·2C)` parameters (8.6 k for k = 2, H = 32, C = 64, against 112 k of conv4) and
/// `N·C·H·W` multiply-adds per block.
///
/// Names: the convolutions and norms as `Conv4`'s (`"\(prefix).\(4i)"`, `"\(prefix).\(4i + 1)"`),
/// the hypernetwork of block `i` as a PyTorch `nn.Sequential(Linear, ReLU, Linear)` under
/// `"\(prefix).hyper\(i)"` (`.0`, `.2`). Registered block by block (conv, norm, hypernetwork),
/// so after block `i`'s backward every gradient from its convolution's offset up is final.
public final class ConditionedConv4: Encoder, ProgressHooks {
  public let featureDim: Int
  public let prePoolDim: Int
  /// k, the length of the invariance vector.
  public let invarianceDim: Int
  public private(set) var prePoolFeatures: Tensor?

  private let convs: [Conv2d]
  private let norms: [Layer]
  private let films: [FiLM]
  private let hyperIn: [Linear]
  private let hyperReLUs: [ReLU]
  private let hyperOut: [Linear]
  private let relus: [ReLU]
  private let pools: [MaxPool2d]
  private let flatten = Flatten()
  private let convOffsets: [Int]

  /// [R, k]: the invariance vectors of the next forward (R = N: one per input row; R = 1: one
  /// for every row), copied in by `setInvariance`.
  private let invariance = Storage()
  private var invarianceRows = 0
  /// [R, k]: dL/dv of the last backward.
  private let dInvariance = Storage()

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  /// - Parameters:
  ///   - invarianceDim: k.
  ///   - hidden: H, the hypernetworks' hidden width.
  ///   - inputSize, inputWidth: the inputs' height and width (default: square), as `Conv4`'s.
  public init(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, width: Int = 64, inputSize: Int = 28,
    inputWidth: Int? = nil, invarianceDim: Int, hidden: Int = 32, makeNorm: NormFactory
  ) rethrows {
    precondition(invarianceDim > 0 && hidden > 0)
    var convs: [Conv2d] = []
    var norms: [Layer] = []
    var hyperIn: [Linear] = []
    var hyperOut: [Linear] = []
    var convOffsets: [Int] = []
    var size = inputSize
    var sizeW = inputWidth ?? inputSize
    var prePool = 0
    for i in 0..<4 {
      convOffsets.append(arena.parameterCount)
      convs.append(
        Conv2d(
          arena: arena, name: "\(prefix).\(4 * i)", inChannels: i == 0 ? inChannels : width, outChannels: width,
          kernel: 3, stride: 1, padding: 1, bias: true))
      norms.append(try makeNorm("\(prefix).\(4 * i + 1)", width))
      hyperIn.append(Linear(arena: arena, name: "\(prefix).hyper\(i).0", inFeatures: invarianceDim, outFeatures: hidden))
      hyperOut.append(Linear(arena: arena, name: "\(prefix).hyper\(i).2", inFeatures: hidden, outFeatures: 2 * width))
      if i == 3 { prePool = width * size * sizeW }
      size /= 2
      sizeW /= 2
    }
    precondition(size >= 1 && sizeW >= 1, "conv4 needs inputs of at least 16×16, got \(inputSize)×\(inputWidth ?? inputSize)")
    self.convs = convs
    self.norms = norms
    self.hyperIn = hyperIn
    self.hyperOut = hyperOut
    self.convOffsets = convOffsets
    self.invarianceDim = invarianceDim
    films = (0..<4).map { FiLM(name: "\(prefix).film\($0)", channels: width) }
    hyperReLUs = (0..<4).map { _ in ReLU() }
    relus = (0..<4).map { _ in ReLU() }
    pools = (0..<4).map { _ in MaxPool2d(kernel: 2, stride: 2) }
    featureDim = width * size * sizeW
    prePoolDim = prePool
    computesInputGradient = false
  }

  /// `false` (the default): backward skips the input gradient of the first convolution; the
  /// input is data. The gradient in `v` does not need it.
  public var computesInputGradient: Bool {
    get { convs[0].computesInputGradient }
    set { convs[0].computesInputGradient = newValue }
  }

  /// Sets the invariance vectors of the following forwards.
  /// - Parameters:
  ///   - v: [rows, k], row-major.
  ///   - rows: N (one per input row) or 1 (shared by every row).
  public func setInvariance(_ v: UnsafePointer<Float>, rows: Int) {
    precondition(rows > 0)
    invariance.ensure(rows * invarianceDim).update(from: v, count: rows * invarianceDim)
    invarianceRows = rows
  }

  /// One invariance vector (k values) for every input row.
  public func setInvariance(_ v: [Float]) {
    precondition(v.count == invarianceDim, "invariance vector of \(v.count) values, expected \(invarianceDim)")
    v.withUnsafeBufferPointer { setInvariance($0.baseAddress!, rows: 1) }
  }

  /// The invariance vectors in use, [rows, k].
  public var invarianceValues: [Float] {
    Array(UnsafeBufferPointer(start: invariance.data, count: invarianceRows * invarianceDim))
  }

  /// dL/dv of the last backward, `[rows, k]` as set (with one shared vector, summed over the
  /// batch). A view, valid until the next backward.
  public private(set) var invarianceGradient: Tensor?

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    guard invarianceRows > 0 else {
      throw LayerShapeError(layer: "ConditionedConv4", reason: "no invariance vector set before forward")
    }
    guard invarianceRows == 1 || invarianceRows == x.shape.n else {
      throw LayerShapeError(
        layer: "ConditionedConv4", reason: "\(invarianceRows) invariance vectors for \(x.shape.n) input rows")
    }
    let v = Tensor(invariance.data, Shape(invarianceRows, invarianceDim))
    var h = x
    for i in 0..<4 {
      h = try convs[i].forward(h, training: training)
      h = try norms[i].forward(h, training: training)
      let a = try hyperReLUs[i].forward(try hyperIn[i].forward(v, training: training), training: training)
      let m = try hyperOut[i].forward(a, training: training)
      h = try films[i].forward(h, modulation: m)
      h = try relus[i].forward(h, training: training)
      if i == 3 { prePoolFeatures = h }
      h = try pools[i].forward(h, training: training)
      onForward?(convOffsets[i])
    }
    return try flatten.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    let dv = dInvariance.tensor(Shape(invarianceRows, invarianceDim))
    dv.data.update(repeating: 0, count: dv.count)
    var g = try flatten.backward(dy)
    for i in (0..<4).reversed() {
      g = try pools[i].backward(g)
      g = try relus[i].backward(g)
      let (dh, dm) = try films[i].backward(g)
      let dvi = try hyperIn[i].backward(try hyperReLUs[i].backward(try hyperOut[i].backward(dm)))
      for j in 0..<dv.count { dv.data[j] += dvi.data[j] }
      g = try norms[i].backward(dh)
      g = try convs[i].backward(g)
      onBackward?(convOffsets[i])
    }
    invarianceGradient = dv
    return g
  }
}

extension ConditionedConv4: FLOPCounting {
  /// The convolutions' FLOPs (the hypernetworks and FiLM add < 1 %).
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
