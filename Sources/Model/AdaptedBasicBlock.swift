/// `BasicBlock` on a task-stacked batch with adapted convolutions (`AdaptedConv`):
/// `y = relu(u2(relu(u1(x))) + shortcut(x))`, where `u1`, `u2` are the shared 3×3
/// convolutions with their per-task adapters and norms, and a projection shortcut is the
/// shared 1×1 convolution with per-task norms (no adapter: adapters sit on 3×3 convolutions).
///
/// Names under `prefix`: `conv1`, `conv2`, `downsample.0` (shared, as torchvision's), and per
/// task t `bn1.task{t}`, `bn2.task{t}`, `downsample.1.task{t}`, `conv1_adapter.task{t}`,
/// `conv2_adapter.task{t}`.
public final class AdaptedBasicBlock: Layer {
  private let unit1: AdaptedConv
  private let relu1 = ReLU()
  private let unit2: AdaptedConv
  private let projection: AdaptedConv?

  private let out = Storage()
  private let dSum = Storage()
  private let dInput = Storage()
  private var output: Tensor?

  public init(
    arena: ParameterArena, prefix: String, inChannels: Int, outChannels: Int, stride: Int,
    mode: AdapterMode, tasks: Int, makeNorm: NormFactory
  ) rethrows {
    unit1 = try AdaptedConvs.conv2d(
      arena: arena, convName: "\(prefix).conv1", normName: "\(prefix).bn1", inChannels: inChannels,
      outChannels: outChannels, stride: stride, mode: mode, tasks: tasks, makeNorm: makeNorm)
    unit2 = try AdaptedConvs.conv2d(
      arena: arena, convName: "\(prefix).conv2", normName: "\(prefix).bn2", inChannels: outChannels,
      outChannels: outChannels, stride: 1, mode: mode, tasks: tasks, makeNorm: makeNorm)
    if stride != 1 || inChannels != outChannels {
      let conv = Conv2d(
        arena: arena, name: "\(prefix).downsample.0", inChannels: inChannels, outChannels: outChannels,
        kernel: 1, stride: stride, padding: 0, bias: false)
      let norms = try (0..<tasks).map { try makeNorm("\(prefix).downsample.1.task\($0)", outChannels) }
      projection = AdaptedConv(mode: .bn, conv: conv, adapters: [], norms: norms)
    } else {
      projection = nil
    }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = try unit1.forward(x, training: training)
    h = try relu1.forward(h, training: training)
    h = try unit2.forward(h, training: training)
    let s = try projection?.forward(x, training: training) ?? x
    precondition(s.shape == h.shape, "AdaptedBasicBlock: shortcut \(s.shape) vs main \(h.shape)")
    let y = out.tensor(h.shape)
    for i in 0..<y.count { y.data[i] = max(h.data[i] + s.data[i], 0) }
    output = y
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let y = output else { preconditionFailure("AdaptedBasicBlock: backward before forward") }
    let g = dSum.tensor(y.shape)
    for i in 0..<y.count { g.data[i] = y.data[i] > 0 ? dy.data[i] : 0 }
    var d = try unit2.backward(g)
    d = try relu1.backward(d)
    d = try unit1.backward(d)
    let ds = try projection?.backward(g) ?? g
    let dx = dInput.tensor(d.shape)
    for i in 0..<dx.count { dx.data[i] = d.data[i] + ds.data[i] }
    return dx
  }
}

/// Builders of `AdaptedConv` units with the naming the adapted encoders use.
public enum AdaptedConvs {
  /// A 3×3 (padding 1) 2-d convolution shared by the tasks, named `convName`, with per-task
  /// norms `"\(normName).task{t}"` and, for series/parallel, per-task 1×1 adapters
  /// `"\(convName)_adapter.task{t}"`.
  public static func conv2d(
    arena: ParameterArena, convName: String, normName: String, inChannels: Int, outChannels: Int,
    stride: Int, bias: Bool = false, mode: AdapterMode, tasks: Int, makeNorm: NormFactory
  ) rethrows -> AdaptedConv {
    let conv = Conv2d(
      arena: arena, name: convName, inChannels: inChannels, outChannels: outChannels, kernel: 3,
      stride: stride, padding: 1, bias: bias)
    var adapters: [Layer] = []
    var norms: [Layer] = []
    for t in 0..<tasks {
      switch mode {
      case .none, .bn: break
      case .series:
        adapters.append(
          Conv2d(
            arena: arena, name: "\(convName)_adapter.task\(t)", inChannels: outChannels,
            outChannels: outChannels, kernel: 1, stride: 1, padding: 0, bias: false))
      case .parallel:
        adapters.append(
          Conv2d(
            arena: arena, name: "\(convName)_adapter.task\(t)", inChannels: inChannels,
            outChannels: outChannels, kernel: 1, stride: stride, padding: 0, bias: false))
      }
      norms.append(try makeNorm("\(normName).task\(t)", outChannels))
    }
    return AdaptedConv(mode: mode, conv: conv, adapters: adapters, norms: norms)
  }

  /// The 1-d counterpart (k3, padding 1) for waveform encoders.
  public static func conv1d(
    arena: ParameterArena, convName: String, normName: String, inChannels: Int, outChannels: Int,
    bias: Bool = true, mode: AdapterMode, tasks: Int, makeNorm: NormFactory
  ) rethrows -> AdaptedConv {
    let conv = Conv1d(
      arena: arena, name: convName, inChannels: inChannels, outChannels: outChannels, kernel: 3,
      padding: 1, bias: bias)
    var adapters: [Layer] = []
    var norms: [Layer] = []
    for t in 0..<tasks {
      if mode == .series || mode == .parallel {
        let cin = mode == .series ? outChannels : inChannels
        adapters.append(
          Conv1d(
            arena: arena, name: "\(convName)_adapter.task\(t)", inChannels: cin,
            outChannels: outChannels, kernel: 1, bias: false))
      }
      norms.append(try makeNorm("\(normName).task\(t)", outChannels))
    }
    return AdaptedConv(mode: mode, conv: conv, adapters: adapters, norms: norms)
  }
}
