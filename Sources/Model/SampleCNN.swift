/// The `samplecnn` encoder (DESIGN.md; Lee et al. 2017, as CLMR uses it) on raw waveforms
/// `[N, 1, 1, 59049]`:
///
/// - stem: Conv1d(1→128, k3, s3) → norm → ReLU (59049 → 19683);
/// - 9 blocks: Conv1d(k3, p1) → norm → ReLU → MaxPool1d(3), channels
///   128, 128, 256, 256, 256, 256, 256, 256, 512 (19683 → 6561 → … → 3 → 1);
/// - head: Conv1d(512→512, k3, p1) → norm → ReLU, flattened to 512-d.
///
/// The head's norm and ReLU follow CLMR's `SampleCNN` (its `sequential` ends with
/// `Conv1d, BatchNorm1d, ReLU`); all convolutions have biases, as there. Names follow CLMR's
/// state dict under `prefix`: stage `i` (0 = stem, 1…9 blocks, 10 head) has its convolution at
/// `"\(prefix).\(i).0"` and its norm at `"\(prefix).\(i).1"`.
///
/// `prePoolFeatures` is block 9's map before its pool, `[N, 512, 1, 3]` (1536-d) for 59049
/// samples.
public final class SampleCNN: Encoder {
  public static let channels = [128, 128, 256, 256, 256, 256, 256, 256, 512]
  /// The input length of the reference configuration, 3^10.
  public static let inputLength = 59049

  /// 512 for 59049 samples (longer inputs leave a longer head map, flattened as CLMR does).
  public let featureDim: Int
  public let prePoolDim: Int
  public private(set) var prePoolFeatures: Tensor?
  public let inputLength: Int

  private let convs: [Conv1d]
  private let norms: [Layer]
  private let relus: [ReLU]
  private let pools: [MaxPool1d]
  private let flatten = Flatten()

  /// - Parameter inputLength: samples per input; must leave a length of at least 1 after the
  ///   stem and nine pools (≥ 59049 gives 1).
  public init(
    arena: ParameterArena, prefix: String, inputLength: Int = SampleCNN.inputLength, makeNorm: NormFactory
  ) throws {
    var convs = [
      Conv1d(arena: arena, name: "\(prefix).0.0", inChannels: 1, outChannels: 128, kernel: 3, stride: 3, bias: true)
    ]
    var norms = [try makeNorm("\(prefix).0.1", 128)]
    var length = inputLength / 3
    var inC = 128
    var prePool = 0
    for (i, c) in Self.channels.enumerated() {
      convs.append(
        Conv1d(arena: arena, name: "\(prefix).\(i + 1).0", inChannels: inC, outChannels: c, kernel: 3, padding: 1, bias: true))
      norms.append(try makeNorm("\(prefix).\(i + 1).1", c))
      if i == Self.channels.count - 1 { prePool = c * length }
      length /= 3
      inC = c
    }
    guard length >= 1 else {
      throw LayerShapeError(layer: prefix, reason: "samplecnn needs inputs of at least 59049 samples, got \(inputLength)")
    }
    convs.append(Conv1d(arena: arena, name: "\(prefix).10.0", inChannels: 512, outChannels: 512, kernel: 3, padding: 1, bias: true))
    norms.append(try makeNorm("\(prefix).10.1", 512))
    self.convs = convs
    self.norms = norms
    relus = convs.map { _ in ReLU() }
    pools = Self.channels.map { _ in MaxPool1d(kernel: 3) }
    prePoolDim = prePool
    self.inputLength = inputLength
    featureDim = 512 * length
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    guard x.shape.c == 1, x.shape.h == 1 else {
      throw LayerShapeError(layer: "samplecnn", reason: "input \(x.shape), expected [N, 1, 1, L]")
    }
    var h = try convs[0].forward(x, training: training)
    h = try norms[0].forward(h, training: training)
    h = try relus[0].forward(h, training: training)
    for i in 1...Self.channels.count {
      h = try convs[i].forward(h, training: training)
      h = try norms[i].forward(h, training: training)
      h = try relus[i].forward(h, training: training)
      if i == Self.channels.count { prePoolFeatures = h }
      h = try pools[i - 1].forward(h, training: training)
    }
    let last = convs.count - 1
    h = try convs[last].forward(h, training: training)
    h = try norms[last].forward(h, training: training)
    h = try relus[last].forward(h, training: training)
    return try flatten.forward(h, training: training)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    var g = try flatten.backward(dy)
    let last = convs.count - 1
    g = try relus[last].backward(g)
    g = try norms[last].backward(g)
    g = try convs[last].backward(g)
    for i in (1...Self.channels.count).reversed() {
      g = try pools[i - 1].backward(g)
      g = try relus[i].backward(g)
      g = try norms[i].backward(g)
      g = try convs[i].backward(g)
    }
    g = try relus[0].backward(g)
    g = try norms[0].backward(g)
    return try convs[0].backward(g)
  }
}
