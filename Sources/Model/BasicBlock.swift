import CKernels

/// The ResNet basic block (He et al. 2016; torchvision's `BasicBlock`):
/// `y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3×3 convolutions
/// (padding 1, no bias; `conv1` carries the stride) and a shortcut that is the identity, or a
/// 1×1 strided convolution + norm when the shape changes.
///
/// Parameter names under `prefix`: `conv1`, `bn1`, `conv2`, `bn2`, and for the projection
/// `\(shortcutName).0` (conv), `\(shortcutName).1` (norm); torchvision calls it `downsample`.
public final class BasicBlock: Layer {
  public let inChannels: Int
  public let outChannels: Int
  public let stride: Int

  private let conv1: Conv2d
  private let bn1: Layer
  /// nil when `bn1` is a `BatchNorm` that applies the ReLU itself.
  private let relu1: ReLU?
  private let conv2: Conv2d
  private let bn2: Layer
  /// The 1×1 convolution and norm of a projection shortcut; nil for the identity.
  private let projection: (conv: Conv2d, norm: Layer)?

  /// [N, outChannels, Ho, Wo]: the block output after the final ReLU (also its mask).
  private let out = Storage()
  /// [N, outChannels, Ho, Wo]: dy masked by the final ReLU.
  private let dSum = Storage()
  /// [N, inChannels, H, W]
  private let dInput = Storage()
  private var output: Tensor?
  /// The add + ReLU tail and its backward through the C kernels (`px_add_relu`,
  /// `px_relu_backward`; the branches' input gradients summed by conv1 accumulating into the
  /// shortcut's; `Gemm.cKernels`); `false` runs the Swift loops, which tests compare against.
  public var usesFastKernels = Gemm.cKernels

  public init(
    arena: ParameterArena, prefix: String, inChannels: Int, outChannels: Int, stride: Int = 1,
    shortcutName: String = "downsample", makeNorm: NormFactory
  ) rethrows {
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.stride = stride
    conv1 = Conv2d(
      arena: arena, name: "\(prefix).conv1", inChannels: inChannels, outChannels: outChannels,
      kernel: 3, stride: stride, padding: 1, bias: false)
    bn1 = try makeNorm("\(prefix).bn1", outChannels)
    relu1 = (bn1 as? BatchNorm)?.fuseReLU() == true ? nil : ReLU()
    conv2 = Conv2d(
      arena: arena, name: "\(prefix).conv2", inChannels: outChannels, outChannels: outChannels,
      kernel: 3, stride: 1, padding: 1, bias: false)
    bn2 = try makeNorm("\(prefix).bn2", outChannels)
    if stride != 1 || inChannels != outChannels {
      let conv = Conv2d(
        arena: arena, name: "\(prefix).\(shortcutName).0", inChannels: inChannels,
        outChannels: outChannels, kernel: 1, stride: stride, padding: 0, bias: false)
      projection = (conv, try makeNorm("\(prefix).\(shortcutName).1", outChannels))
    } else {
      projection = nil
    }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    var h = try conv1.forward(x, training: training)
    h = try bn1.forward(h, training: training)
    if let relu1 { h = try relu1.forward(h, training: training) }
    h = try conv2.forward(h, training: training)
    h = try bn2.forward(h, training: training)
    var s = x
    if let (conv, norm) = projection {
      s = try norm.forward(try conv.forward(x, training: training), training: training)
    }
    precondition(s.shape == h.shape, "BasicBlock: shortcut \(s.shape) vs main \(h.shape)")
    let y = out.tensor(h.shape)
    if usesFastKernels {
      px_add_relu(y.data, h.data, s.data, y.count)
    } else {
      for i in 0..<y.count { y.data[i] = max(h.data[i] + s.data[i], 0) }
    }
    output = y
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let y = output else { preconditionFailure("BasicBlock: backward before forward") }
    precondition(dy.shape == y.shape, "BasicBlock: dy \(dy.shape), expected \(y.shape)")
    let g = dSum.tensor(y.shape)
    if usesFastKernels {
      px_relu_backward(g.data, y.data, dy.data, y.count)
    } else {
      for i in 0..<y.count { g.data[i] = y.data[i] > 0 ? dy.data[i] : 0 }
    }
    var d = try bn2.backward(g)
    d = try conv2.backward(d)
    if let relu1 { d = try relu1.backward(d) }
    d = try bn1.backward(d)
    let dShortcut: Tensor
    if let (conv, norm) = projection {
      dShortcut = try conv.backward(try norm.backward(g))
    } else {
      dShortcut = g
    }
    guard usesFastKernels else {
      d = try conv1.backward(d)
      precondition(d.shape == dShortcut.shape)
      let dx = dInput.tensor(d.shape)
      for i in 0..<dx.count { dx.data[i] = d.data[i] + dShortcut.data[i] }
      return dx
    }
    // dx = conv1's input gradient + the shortcut's, added by conv1 into the shortcut's buffer
    // (g or the projection's dX, both no longer needed).
    return try conv1.backward(d, accumulatingInto: dShortcut)
  }
}

extension BasicBlock: FLOPCounting {
  public func forwardFLOPs(_ input: Shape) -> (flops: Int, output: Shape) {
    let (f1, y1) = conv1.forwardFLOPs(input)
    let (f2, y2) = conv2.forwardFLOPs(y1)
    return (f1 + f2 + (projection?.conv.forwardFLOPs(input).flops ?? 0), y2)
  }
}
