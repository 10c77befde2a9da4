/// Recon's branched `conv4` (Shi et al., ICLR 2023: "Reducing Conflicting Gradients from the
/// Root"): the layers its conflict search picked become task-specific, the rest stay shared.
///
/// The network is `conv4`'s four blocks (conv → norm → ReLU → pool, names as `Conv4`). Up to
/// the first task-specific layer it runs once on the N inputs; from there on it runs on the
/// task-stacked batch `[T·N, …]` (as `MultiTaskEncoder` does for MT-SLVR): a shared
/// convolution runs once on all T·N rows (its gradient is the sum of the task branches'), a
/// task-specific one as T copies `name.task{t}`, each on its task's rows. Every norm after the
/// branch point is per task (`name.task{t}`): its batch statistics must be its branch's, and
/// its 2·C affine parameters come with it, as in MT-SLVR's adapted units. Output: the tasks'
/// pooled features side by side, `[N, T·d, 1, 1]`, no final norm.
extension MultiTaskEncoder {
  /// conv4's layers that can be made task-specific: the convolutions and norms, in order.
  public static func conv4LayerNames(prefix: String) -> [String] {
    (0..<4).flatMap { ["\(prefix).\(4 * $0)", "\(prefix).\(4 * $0 + 1)"] }
  }

  /// - Parameter taskSpecific: layer names from `conv4LayerNames` (at least one).
  public static func branchedConv4(
    arena: ParameterArena, prefix: String, inChannels: Int = 1, width: Int = 64, inputSize: Int = 28,
    inputWidth: Int? = nil, tasks: Int, taskSpecific: Set<String>, makeNorm: NormFactory
  ) throws -> MultiTaskEncoder {
    let names = conv4LayerNames(prefix: prefix)
    if let bad = taskSpecific.subtracting(names).sorted().first {
      throw LayerShapeError(layer: prefix, reason: "'\(bad)' is not a conv4 layer (layers: \(names.joined(separator: ", ")))")
    }
    guard let split = names.firstIndex(where: taskSpecific.contains) else {
      throw LayerShapeError(layer: prefix, reason: "no task-specific layer given (layers: \(names.joined(separator: ", ")))")
    }
    var shared: [(Layer, Int)] = []
    var adapted: [(Layer, Int)] = []
    var firstConv: Conv2d?
    var size = inputSize
    var sizeW = inputWidth ?? inputSize
    var prePool = 0
    for i in 0..<4 {
      let convName = names[2 * i]
      let normName = names[2 * i + 1]
      let inC = i == 0 ? inChannels : width
      let convOffset = arena.parameterCount
      func conv(_ name: String) -> Conv2d {
        Conv2d(arena: arena, name: name, inChannels: inC, outChannels: width, kernel: 3, stride: 1, padding: 1, bias: true)
      }
      let convUnit: Layer
      if taskSpecific.contains(convName) {
        convUnit = TaskSplit((0..<tasks).map { conv("\(convName).task\($0)") })
      } else {
        let c = conv(convName)
        if i == 0 { firstConv = c }
        convUnit = c
      }
      let normOffset = arena.parameterCount
      let normUnit: Layer =
        2 * i + 1 >= split
        ? TaskSplit(try (0..<tasks).map { try makeNorm("\(normName).task\($0)", width) })
        : try makeNorm(normName, width)
      let tail: [Layer] = i < 3 ? [ReLU(), MaxPool2d(kernel: 2, stride: 2)] : [ReLU()]
      if i == 3 { prePool = width * size * sizeW }
      size /= 2
      sizeW /= 2
      if 2 * i + 1 < split {
        shared.append((Sequential([convUnit, normUnit] + tail), convOffset))
      } else if 2 * i >= split {
        adapted.append((Sequential([convUnit, normUnit] + tail), convOffset))
      } else {
        shared.append((convUnit, convOffset))
        adapted.append((Sequential([normUnit] + tail), normOffset))
      }
    }
    guard size >= 1 && sizeW >= 1 else {
      throw LayerShapeError(layer: prefix, reason: "conv4 needs inputs of at least 16×16, got \(inputSize)×\(inputWidth ?? inputSize)")
    }
    return MultiTaskEncoder(
      mode: .none, tasks: tasks, taskFeatureDim: width * size * sizeW, taskPrePoolDim: prePool, shared: shared,
      adapted: adapted, pool: MaxPool2d(kernel: 2, stride: 2), finalNorm: nil, finalOffset: arena.parameterCount,
      firstConv: split > 0 ? firstConv : nil)
  }
}
