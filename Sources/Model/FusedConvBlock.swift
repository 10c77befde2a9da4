import CKernels

/// Conv 3×3 (stride 1, padding 1, bias) → BatchNorm → ReLU → MaxPool(2, 2) as one training
/// pass for inputs of few channels: conv4's first block on images, whose convolution is
/// cheap (C_in·9 multiply-adds per output) but whose output map is the largest of the network
/// (64 channels at full resolution, 103 MB for 512 views of 28×28 in fp32).
///
/// That map is never stored. Each of the four passes recomputes it one output plane at a time
/// into a scratch that stays in L1 (`px_conv3_plane`): the BN moments; normalise-ReLU-pool
/// (`px_bn_relu_pool2_forward`, which writes the pooled map and its argmax); and backward's
/// two passes (`px_sum_dot_relu_pool2`, then `px_bn_relu_pool2_backward` into a second
/// scratch, whose plane goes straight into the bias and weight gradients with `px_sum` and
/// `px_conv3_wgrad_plane`). The input gradient is not computed (the block's input is data).
///
/// Same parameters (those of `conv` and `bn`) and the same values, within rounding, as the
/// three layers. With `gemmPrecision == .bf16` the convolution's operands are rounded as the
/// bf16 GEMMs round them (x and the weights in forward, dY and x for the weight gradient),
/// products summed in fp32.
final class FusedConvBlock {
  let conv: Conv2d
  let bn: BatchNorm

  /// [N, C, H/2, W/2] pooled output and its argmax within each H·W plane.
  private let pooled = Storage()
  private var argmax: UnsafeMutablePointer<Int32> = .allocate(capacity: 1)
  private var argmaxCapacity = 1
  /// The bf16-rounded copies of x and of the weights (bf16 only).
  private let roundedInput = Storage()
  private let roundedWeights = Storage()
  /// The last forward's input (or its rounded copy) and weights, and its shape.
  private var input: UnsafePointer<Float>?
  private var weights: UnsafePointer<Float>?
  private(set) var inputShape = Shape(0, 0)

  init(conv: Conv2d, bn: BatchNorm) {
    self.conv = conv
    self.bn = bn
  }

  deinit {
    Storage.track(bytes: -(argmaxCapacity - 1) * 4)
    argmax.deallocate()
  }

  /// Whether a training forward of input shape `s` runs fused: the convolution is a 3×3 "same"
  /// one with a bias and at most 4 input channels whose input gradient is not needed, the norm
  /// is a BatchNorm with the fused ReLU, the C kernels run, and planes hold ≥ 16 values.
  func applies(_ s: Shape) -> Bool {
    conv.kernel == 3 && conv.stride == 1 && conv.padding == 1 && conv.biasOffset != nil
      && conv.inChannels <= 4 && s.c == conv.inChannels && !conv.computesInputGradient
      && conv.usesFastKernels && bn.usesFastKernels && bn.fusedReLU && bn.channels == conv.outChannels
      && s.h >= 2 && s.w >= 2 && s.spatial >= 16
  }

  /// The pooled map [N, C_out, H/2, W/2] of a training forward (`applies(x.shape)`).
  func forward(_ x: Tensor) throws -> Tensor {
    let s = x.shape
    precondition(applies(s), "FusedConvBlock: input \(s) does not fit the fused pass")
    let (O, C, h, w, S) = (conv.outChannels, s.c, s.h, s.w, s.spatial)
    let arena = conv.arena
    var xin = UnsafePointer(x.data)
    var wts = UnsafePointer(arena.params + conv.weightOffset)
    if arena.gemmPrecision == .bf16 {
      let xr = roundedInput.ensure(s.count)
      for i in 0..<s.count { xr[i] = px_bf16_round(x.data[i]) }
      let wr = roundedWeights.ensure(O * C * 9)
      for i in 0..<(O * C * 9) { wr[i] = px_bf16_round(wts[i]) }
      xin = UnsafePointer(xr)
      wts = UnsafePointer(wr)
    }
    input = xin
    weights = wts
    inputShape = s
    let bias = arena.params + conv.biasOffset!
    let ys = Shape(s.n, O, h / 2, w / 2)
    let P = ys.spatial
    let y = pooled.tensor(ys)
    if ys.count > argmaxCapacity {
      argmax.deallocate()
      Storage.track(bytes: (ys.count - argmaxCapacity) * 4)
      argmax = .allocate(capacity: ys.count)
      argmaxCapacity = ys.count
    }
    // Pass 1: the moments of the convolution's output, per channel over the samples.
    let moments = bn.moments
    moments[0] = Double(s.n * S)
    Parallel.ranges(O, costPerItem: s.n * S * C * 9) { lo, hi in
      let plane = UnsafeMutablePointer<Float>.allocate(capacity: S)
      defer { plane.deallocate() }
      for o in lo..<hi {
        moments[1 + o] = 0
        moments[1 + O + o] = 0
      }
      for n in 0..<s.n {
        for o in lo..<hi {
          px_conv3_plane(plane, xin + n * C * S, C, h, w, wts + o * C * 9, bias[o])
          px_sum_sumsq(plane, S, moments + 1 + o, moments + 1 + O + o)
        }
      }
    }
    try bn.finishMoments(Shape(s.n, O, h, w))
    // Pass 2: normalise, ReLU and pool.
    let idx = argmax
    Parallel.ranges(O, costPerItem: s.n * S * C * 9) { lo, hi in
      let plane = UnsafeMutablePointer<Float>.allocate(capacity: S)
      defer { plane.deallocate() }
      for n in 0..<s.n {
        for o in lo..<hi {
          let t = self.bn.transform(o)
          let q = (n * O + o) * P
          px_conv3_plane(plane, xin + n * C * S, C, h, w, wts + o * C * 9, bias[o])
          px_bn_relu_pool2_forward(y.data + q, idx + q, plane, h, w, t.mu, t.r, t.g, t.b)
        }
      }
    }
    return y
  }

  /// Backward of the last forward from dy [N, C_out, H/2, W/2]: accumulates the BatchNorm's and
  /// the convolution's parameter gradients (this rank's samples, as every layer does).
  func backward(_ dy: Tensor) throws {
    guard let xin = input, let wts = weights else {
      preconditionFailure("FusedConvBlock: backward before forward")
    }
    let s = inputShape
    let (O, C, h, w, S) = (conv.outChannels, s.c, s.h, s.w, s.spatial)
    let ys = Shape(s.n, O, h / 2, w / 2)
    guard dy.shape == ys else {
      throw LayerShapeError(
        layer: bn.name, reason: "backward got dy \(dy.shape), forward produced \(ys)")
    }
    let P = ys.spatial
    let arena = conv.arena
    let bias = arena.params + conv.biasOffset!
    let (dw, db) = (arena.grads + conv.weightOffset, arena.grads + conv.biasOffset!)
    let (dGamma, dBeta) = (arena.grads + bn.weightOffset, arena.grads + bn.biasOffset)
    let round: Int32 = arena.gemmPrecision == .bf16 ? 1 : 0
    let (moments, idx) = (bn.moments, argmax)
    // Pass 3: Σdv and Σdv·x̂ per channel.
    Parallel.ranges(O, costPerItem: s.n * S * C * 9) { lo, hi in
      let plane = UnsafeMutablePointer<Float>.allocate(capacity: S)
      defer { plane.deallocate() }
      for o in lo..<hi {
        moments[o] = 0
        moments[O + o] = 0
      }
      for n in 0..<s.n {
        for o in lo..<hi {
          let t = self.bn.transform(o)
          let q = (n * O + o) * P
          px_conv3_plane(plane, xin + n * C * S, C, h, w, wts + o * C * 9, bias[o])
          px_sum_dot_relu_pool2(dy.data + q, idx + q, plane, h, w, t.mu, t.r, t.g, t.b, moments + o, moments + O + o)
        }
      }
      for o in lo..<hi {
        dBeta[o] += Float(moments[o])
        dGamma[o] += Float(moments[O + o])
      }
    }
    try bn.finishBackwardSums()
    // Pass 4: dY of the convolution, plane by plane, into its bias and weight gradients.
    Parallel.ranges(O, costPerItem: 2 * s.n * S * C * 9) { lo, hi in
      let plane = UnsafeMutablePointer<Float>.allocate(capacity: 2 * S)
      let grad = plane + S
      // Per channel of the range: its weight-gradient taps and its bias-gradient sum.
      let local = UnsafeMutablePointer<Float>.allocate(capacity: (hi - lo) * C * 9)
      let sums = UnsafeMutablePointer<Double>.allocate(capacity: hi - lo)
      defer {
        plane.deallocate()
        local.deallocate()
        sums.deallocate()
      }
      local.initialize(repeating: 0, count: (hi - lo) * C * 9)
      sums.initialize(repeating: 0, count: hi - lo)
      for n in 0..<s.n {
        let xs = xin + n * C * S
        for o in lo..<hi {
          let t = self.bn.transform(o)
          let k = self.bn.backwardCoefficients(o)
          let q = (n * O + o) * P
          px_conv3_plane(plane, xs, C, h, w, wts + o * C * 9, bias[o])
          px_bn_relu_pool2_backward(
            grad, dy.data + q, idx + q, plane, h, w, t.mu, t.r, k.k, k.mdy, k.mdx, t.g, t.b)
          px_sum(grad, S, sums + (o - lo))
          px_conv3_wgrad_plane(local + (o - lo) * C * 9, grad, xs, C, h, w, round)
        }
      }
      for o in lo..<hi {
        db[o] += Float(sums[o - lo])
        for i in 0..<(C * 9) { dw[o * C * 9 + i] += local[(o - lo) * C * 9 + i] }
      }
    }
  }
}
