/// An encoder shared by T tasks with task-specific adapters (MT-SLVR, Heggan et al. 2023):
/// a shared first stage runs once on the N inputs; its output is repeated into a task-stacked
/// batch `[T·N, …]` that the adapted stages (`AdaptedConv` units: shared convolutions,
/// per-task adapters and norms) process; after the final pooling a task-specific BatchNorm
/// normalises each task's features.
///
/// The output, what downstream probes see, is the **concatenation** of the tasks' features,
/// `[N, T·d, 1, 1]` (task 0's d features first); `prePoolFeatures` likewise concatenates the
/// tasks' pre-pool maps along channels, `[N, T·C, H, W]`.
///
/// Progress: every unit (shared or adapted) reports after its backward; parameters are
/// registered shared stage, adapted units, final norms, so each report's offset bounds
/// everything already final.
public final class MultiTaskEncoder: Encoder, ProgressHooks {
  public let mode: AdapterMode
  public let taskCount: Int
  /// Features per task after the final pooling.
  public let taskFeatureDim: Int
  public var featureDim: Int { taskCount * taskFeatureDim }
  public let prePoolDim: Int
  public private(set) var prePoolFeatures: Tensor?

  /// (unit, first arena offset) on the N inputs.
  private let shared: [(Layer, Int)]
  /// (unit, first arena offset) on the task-stacked batch.
  private let adapted: [(Layer, Int)]
  /// From the pre-pool map to `[T·N, d, …]` (may hold parameters registered before the
  /// final norms; reported with them).
  private let pool: Layer
  private let finalNorm: TaskSplit?
  private let finalOffset: Int
  /// Set when the first shared layer is a convolution on the data.
  private let firstConv: Conv2d?

  private let stacked = Storage()
  private let prePool = Storage()
  private let out = Storage()
  private let dStacked = Storage()
  private let dShared = Storage()
  private var sharedShape = Shape(0, 0)
  private var pooledShape = Shape(0, 0)

  public var onBackward: ((_ lowestFinishedOffset: Int) -> Void)?
  public var onForward: ((_ firstOffset: Int) -> Void)?

  /// - Parameters:
  ///   - shared, adapted: units with their first arena offsets, in registration order.
  ///   - pool: pre-pool map → pooled features.
  ///   - finalNorm: per-task norms on the pooled features (registered last); nil: none
  ///     (Recon's branched conv4, whose last norms are per task already).
  public init(
    mode: AdapterMode, tasks: Int, taskFeatureDim: Int, taskPrePoolDim: Int,
    shared: [(Layer, Int)], adapted: [(Layer, Int)], pool: Layer, finalNorm: TaskSplit?,
    finalOffset: Int, firstConv: Conv2d? = nil
  ) {
    precondition(tasks >= 1 && (finalNorm?.tasks.count ?? tasks) == tasks)
    self.mode = mode
    taskCount = tasks
    self.taskFeatureDim = taskFeatureDim
    prePoolDim = tasks * taskPrePoolDim
    self.shared = shared
    self.adapted = adapted
    self.pool = pool
    self.finalNorm = finalNorm
    self.finalOffset = finalOffset
    self.firstConv = firstConv
  }

  /// `false`: backward skips the input gradient of the first convolution (training needs
  /// none).
  public var computesInputGradient: Bool {
    get { firstConv?.computesInputGradient ?? true }
    set { firstConv?.computesInputGradient = newValue }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = x
    for (u, o) in shared {
      h = try u.forward(h, training: training)
      onForward?(o)
    }
    sharedShape = h.shape
    let T = taskCount
    let n = h.shape.n
    let s = stacked.tensor(Shape(T * n, h.shape.c, h.shape.h, h.shape.w))
    for t in 0..<T { (s.data + t * h.count).update(from: h.data, count: h.count) }
    h = s
    for (u, o) in adapted {
      h = try u.forward(h, training: training)
      onForward?(o)
    }
    prePoolFeatures = Self.concatenate(h, tasks: T, into: prePool)
    h = try pool.forward(h, training: training)
    pooledShape = h.shape
    guard h.shape.perSample == taskFeatureDim else {
      throw LayerShapeError(
        layer: "MultiTaskEncoder", reason: "pooled \(h.shape), expected \(taskFeatureDim) features per task")
    }
    h = h.reshaped(Shape(T * n, taskFeatureDim))
    if let finalNorm { h = try finalNorm.forward(h, training: training) }
    onForward?(finalOffset)
    return Self.concatenate(h, tasks: T, into: out)
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    let T = taskCount
    let n = dy.shape.n
    let d = taskFeatureDim
    precondition(dy.shape.perSample == T * d, "MultiTaskEncoder: dy \(dy.shape)")
    // [N, T·d] → [T·N, d].
    let g0 = dStacked.tensor(Shape(T * n, d))
    for t in 0..<T {
      for i in 0..<n {
        (g0.data + (t * n + i) * d).update(from: dy.data + i * T * d + t * d, count: d)
      }
    }
    var g = try finalNorm?.backward(g0) ?? g0
    g = try pool.backward(g.reshaped(pooledShape))
    onBackward?(finalOffset)
    for (u, o) in adapted.reversed() {
      g = try u.backward(g)
      onBackward?(o)
    }
    // The shared stage's output fed every task: its gradient is the sum.
    let ds = dShared.tensor(sharedShape)
    ds.data.update(from: g.data, count: ds.count)
    for t in 1..<max(T, 1) {
      let src = g.data + t * ds.count
      for i in 0..<ds.count { ds.data[i] += src[i] }
    }
    g = ds
    for (u, o) in shared.reversed() {
      g = try u.backward(g)
      onBackward?(o)
    }
    return g
  }

  /// `[T·N, C, H, W]` task-stacked → `[N, T·C, H, W]` (task blocks along channels).
  static func concatenate(_ x: Tensor, tasks T: Int, into storage: Storage) -> Tensor {
    let n = x.shape.n / T
    let per = x.shape.perSample
    let y = storage.tensor(Shape(n, T * x.shape.c, x.shape.h, x.shape.w))
    for t in 0..<T {
      for i in 0..<n {
        (y.data + i * T * per + t * per).update(from: x.data + (t * n + i) * per, count: per)
      }
    }
    return y
  }

  /// Parameters per group: shared, then each task's (names with a `.task{t}` component).
  public static func parameterCounts(_ arena: ParameterArena, tasks: Int, prefix: String) -> (
    shared: Int, perTask: [Int]
  ) {
    var shared = 0
    var perTask = [Int](repeating: 0, count: tasks)
    for r in arena.parameterRanges where r.name.hasPrefix(prefix + ".") {
      if let t = (0..<tasks).first(where: { r.name.contains(".task\($0).") || r.name.contains("_adapter.task\($0).") }) {
        perTask[t] += r.count
      } else {
        shared += r.count
      }
    }
    return (shared, perTask)
  }
}

// MARK: - Builders

extension MultiTaskEncoder {
  /// MT-SLVR's `conv4`: block 1 shared (`prefix.0` conv, `prefix.1` norm, as `Conv4`), blocks
  /// 2–4 adapted (`prefix.{4i}` shared conv, `prefix.{4i+1}.task{t}` norms,
  /// `prefix.{4i}_adapter.task{t}`), task norms `prefix.final_bn.task{t}` on the 64-d output.
  public static func conv4(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, width: Int = 64,
    inputSize: Int = 28, inputWidth: Int? = nil, mode: AdapterMode, tasks: Int = 2, makeNorm: NormFactory
  ) rethrows -> MultiTaskEncoder {
    let o0 = arena.parameterCount
    let conv0 = Conv2d(
      arena: arena, name: "\(prefix).0", inChannels: inChannels, outChannels: width, kernel: 3,
      stride: 1, padding: 1, bias: true)
    let stem = Sequential([conv0, try makeNorm("\(prefix).1", width), ReLU(), MaxPool2d(kernel: 2, stride: 2)])
    var size = inputSize / 2
    var sizeW = (inputWidth ?? inputSize) / 2
    var adapted: [(Layer, Int)] = []
    var prePool = 0
    for i in 1..<4 {
      let o = arena.parameterCount
      let unit = try AdaptedConvs.conv2d(
        arena: arena, convName: "\(prefix).\(4 * i)", normName: "\(prefix).\(4 * i + 1)",
        inChannels: width, outChannels: width, stride: 1, bias: true, mode: mode, tasks: tasks,
        makeNorm: makeNorm)
      if i < 3 {
        adapted.append((Sequential([unit, ReLU(), MaxPool2d(kernel: 2, stride: 2)]), o))
        size /= 2
        sizeW /= 2
      } else {
        adapted.append((Sequential([unit, ReLU()]), o))
        prePool = width * size * sizeW
        size /= 2
        sizeW /= 2
      }
    }
    precondition(size >= 1 && sizeW >= 1, "conv4 needs inputs of at least 16×16, got \(inputSize)×\(inputWidth ?? inputSize)")
    let d = width * size * sizeW
    let fo = arena.parameterCount
    let final = TaskSplit(try (0..<tasks).map { try makeNorm("\(prefix).final_bn.task\($0)", d) })
    return MultiTaskEncoder(
      mode: mode, tasks: tasks, taskFeatureDim: d, taskPrePoolDim: prePool, shared: [(stem, o0)],
      adapted: adapted, pool: MaxPool2d(kernel: 2, stride: 2), finalNorm: final, finalOffset: fo,
      firstConv: conv0)
  }

  /// MT-SLVR's `resnet18` (CIFAR stem): stem and `layer1` shared (torchvision names), `layer2`
  /// … `layer4` adapted (`AdaptedBasicBlock`), task norms `prefix.final_bn.task{t}` on the
  /// pooled 512-d features.
  public static func resnet18(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, inputSize: Int = 28,
    inputWidth: Int? = nil, mode: AdapterMode, tasks: Int = 2, makeNorm: NormFactory
  ) rethrows -> MultiTaskEncoder {
    let o0 = arena.parameterCount
    let conv1 = Conv2d(
      arena: arena, name: "\(prefix).conv1", inChannels: inChannels, outChannels: 64, kernel: 3,
      stride: 1, padding: 1, bias: false)
    var shared: [(Layer, Int)] = [(Sequential([conv1, try makeNorm("\(prefix).bn1", 64), ReLU()]), o0)]
    for b in 0..<2 {
      let o = arena.parameterCount
      shared.append(
        (try BasicBlock(arena: arena, prefix: "\(prefix).layer1.\(b)", inChannels: 64, outChannels: 64, makeNorm: makeNorm), o))
    }
    var adapted: [(Layer, Int)] = []
    var channels = 64
    var size = inputSize
    var widthSize = inputWidth ?? inputSize
    for (stage, width) in [(2, 128), (3, 256), (4, 512)] {
      for b in 0..<2 {
        let s = b == 0 ? 2 : 1
        let o = arena.parameterCount
        adapted.append(
          (try AdaptedBasicBlock(
            arena: arena, prefix: "\(prefix).layer\(stage).\(b)", inChannels: channels, outChannels: width,
            stride: s, mode: mode, tasks: tasks, makeNorm: makeNorm), o))
        channels = width
        size = Conv2dReference.outputSize(size, kernel: 3, stride: s, padding: 1)
        widthSize = Conv2dReference.outputSize(widthSize, kernel: 3, stride: s, padding: 1)
      }
    }
    let fo = arena.parameterCount
    let final = TaskSplit(try (0..<tasks).map { try makeNorm("\(prefix).final_bn.task\($0)", 512) })
    return MultiTaskEncoder(
      mode: mode, tasks: tasks, taskFeatureDim: 512, taskPrePoolDim: 512 * size * widthSize, shared: shared,
      adapted: adapted, pool: GlobalAvgPool(), finalNorm: final, finalOffset: fo, firstConv: conv1)
  }

  /// MT-SLVR's `samplecnn` on waveforms `[N, 1, 1, L]`: the stem and block 1 shared (CLMR
  /// names, as `SampleCNN`), blocks 2–9 and the head convolution adapted
  /// (`prefix.{i}.0` shared conv, `prefix.{i}.1.task{t}` norms), task norms
  /// `prefix.final_bn.task{t}` on the 512-d output.
  public static func sampleCNN(
    arena: ParameterArena, prefix: String, inputLength: Int = SampleCNN.inputLength,
    mode: AdapterMode, tasks: Int = 2, makeNorm: NormFactory
  ) throws -> MultiTaskEncoder {
    let channels = SampleCNN.channels
    let o0 = arena.parameterCount
    let stem = Sequential([
      Conv1d(arena: arena, name: "\(prefix).0.0", inChannels: 1, outChannels: 128, kernel: 3, stride: 3, bias: true),
      try makeNorm("\(prefix).0.1", 128), ReLU(),
    ])
    let o1 = arena.parameterCount
    let block1 = Sequential([
      Conv1d(arena: arena, name: "\(prefix).1.0", inChannels: 128, outChannels: channels[0], kernel: 3, padding: 1, bias: true),
      try makeNorm("\(prefix).1.1", channels[0]), ReLU(), MaxPool1d(kernel: 3),
    ])
    var length = inputLength / 9
    var inC = channels[0]
    var adapted: [(Layer, Int)] = []
    var prePool = 0
    for i in 2...channels.count {
      let c = channels[i - 1]
      let o = arena.parameterCount
      let unit = try AdaptedConvs.conv1d(
        arena: arena, convName: "\(prefix).\(i).0", normName: "\(prefix).\(i).1", inChannels: inC,
        outChannels: c, mode: mode, tasks: tasks, makeNorm: makeNorm)
      if i < channels.count {
        adapted.append((Sequential([unit, ReLU(), MaxPool1d(kernel: 3)]), o))
      } else {
        adapted.append((Sequential([unit, ReLU()]), o))
        prePool = c * length
      }
      length /= 3
      inC = c
    }
    guard length >= 1 else {
      throw LayerShapeError(layer: prefix, reason: "samplecnn needs inputs of at least 59049 samples, got \(inputLength)")
    }
    // The head convolution sits after block 9's pool: part of `pool`, registered before the
    // final norms and reported with them.
    let head = try AdaptedConvs.conv1d(
      arena: arena, convName: "\(prefix).10.0", normName: "\(prefix).10.1", inChannels: 512,
      outChannels: 512, mode: mode, tasks: tasks, makeNorm: makeNorm)
    let pool = Sequential([MaxPool1d(kernel: 3), head, ReLU(), Flatten()])
    let d = 512 * length
    let fo = arena.parameterCount
    let final = TaskSplit(try (0..<tasks).map { try makeNorm("\(prefix).final_bn.task\($0)", d) })
    return MultiTaskEncoder(
      mode: mode, tasks: tasks, taskFeatureDim: d, taskPrePoolDim: prePool,
      shared: [(stem, o0), (block1, o1)], adapted: adapted, pool: pool, finalNorm: final,
      finalOffset: fo)
  }
}
