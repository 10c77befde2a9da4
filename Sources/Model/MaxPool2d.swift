import CKernels

/// Max pooling without padding in floor mode, as PyTorch's `nn.MaxPool2d(kernel, stride)`:
/// `Ho = (H − k) / s + 1` (7 → 3 for k = s = 2). Forward saves the position of each maximum
/// (the first in scan order on ties, NaN wins, as PyTorch); backward routes `dy` there.
public final class MaxPool2d: Layer {
  public let kernel: Int
  public let stride: Int

  /// [N, C, Ho, Wo]
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  /// [N, C, Ho, Wo]: index of the maximum within its `H·W` input plane.
  private var argmax: UnsafeMutablePointer<Int32> = .allocate(capacity: 1)
  private var argmaxCapacity = 1
  private var inputShape: Shape?

  /// 2×2 stride-2 windows take a specialised forward (`pool2x2`) and backward (each window
  /// written once, no zero fill + scatter); `false` runs the general loops (tests compare).
  public var usesFastPath = true
  /// With `usesFastPath`, the C kernels (`px_maxpool2_plane…`; `Gemm.cKernels`); `false`
  /// runs the Swift 2×2 loops.
  public var usesFastKernels = Gemm.cKernels

  public init(kernel: Int = 2, stride: Int? = nil) {
    precondition(kernel > 0 && (stride ?? kernel) > 0)
    self.kernel = kernel
    self.stride = stride ?? kernel
  }

  deinit {
    Storage.track(bytes: -argmaxCapacity * 4)
    argmax.deallocate()
  }

  public func outputShape(_ s: Shape) -> Shape {
    Shape(s.n, s.c, (s.h - kernel) / stride + 1, (s.w - kernel) / stride + 1)
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    precondition(x.shape.h >= kernel && x.shape.w >= kernel, "MaxPool2d: input \(x.shape) < kernel")
    let ys = outputShape(x.shape)
    let y = out.tensor(ys)
    if ys.count > argmaxCapacity {
      argmax.deallocate()
      Storage.track(bytes: (ys.count - argmaxCapacity) * 4)
      argmax = .allocate(capacity: ys.count)
      argmaxCapacity = ys.count
    }
    inputShape = x.shape
    let (h, w, ho, wo, k, s) = (x.shape.h, x.shape.w, ys.h, ys.w, kernel, stride)
    if usesFastPath && k == 2 && s == 2 && usesFastKernels {
      let (yp, ip, xp) = (y.data, argmax, x.data)
      Parallel.ranges(ys.n * ys.c, costPerItem: h * w) { lo, hi in
        for plane in lo..<hi {
          px_maxpool2_plane(yp + plane * ho * wo, ip + plane * ho * wo, xp + plane * h * w, h, w)
        }
      }
      return y
    }
    if usesFastPath && k == 2 && s == 2 {
      for plane in 0..<(ys.n * ys.c) {
        MaxPool2d.pool2x2(
          y.data + plane * ho * wo, argmax + plane * ho * wo, x.data + plane * h * w, h, w)
      }
      return y
    }
    for plane in 0..<(ys.n * ys.c) {
      let src = x.data + plane * h * w
      let dst = y.data + plane * ho * wo
      let idx = argmax + plane * ho * wo
      for i in 0..<ho {
        for j in 0..<wo {
          var best = -Float.infinity
          var at = (i * s) * w + j * s
          for ki in 0..<k {
            for kj in 0..<k {
              let p = (i * s + ki) * w + j * s + kj
              let v = src[p]
              if v > best || v.isNaN {
                best = v
                at = p
                if v.isNaN { break }
              }
            }
            if best.isNaN { break }
          }
          dst[i * wo + j] = best
          idx[i * wo + j] = Int32(at)
        }
      }
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let xs = inputShape else { preconditionFailure("MaxPool2d: backward before forward") }
    let ys = outputShape(xs)
    precondition(dy.shape == ys, "MaxPool2d: dy \(dy.shape), expected \(ys)")
    let dx = dInput.tensor(xs)
    if usesFastPath && kernel == 2 && stride == 2 && usesFastKernels {
      let (dxp, ip, gp) = (dx.data, argmax, dy.data)
      Parallel.ranges(ys.n * ys.c, costPerItem: xs.spatial) { lo, hi in
        for plane in lo..<hi {
          px_maxpool2_plane_backward(
            dxp + plane * xs.spatial, ip + plane * ys.spatial, gp + plane * ys.spatial, xs.h, xs.w)
        }
      }
      return dx
    }
    if usesFastPath && kernel == 2 && stride == 2 {
      let (h, w, wo) = (xs.h, xs.w, ys.w)
      for plane in 0..<(ys.n * ys.c) {
        let d = dx.data + plane * h * w
        let g = dy.data + plane * ys.h * wo
        let idx = argmax + plane * ys.h * wo
        for i in 0..<ys.h {
          let r0 = d + 2 * i * w
          let r1 = r0 + w
          let top = Int32(2 * i * w)
          let bottom = top + Int32(w)
          for j in 0..<wo {
            let v = g[i * wo + j]
            let at = idx[i * wo + j]
            let p = 2 * j
            r0[p] = at == top + Int32(p) ? v : 0
            r0[p + 1] = at == top + Int32(p + 1) ? v : 0
            r1[p] = at == bottom + Int32(p) ? v : 0
            r1[p + 1] = at == bottom + Int32(p + 1) ? v : 0
          }
          // An odd width leaves the last column out of every window.
          if w > 2 * wo {
            r0[w - 1] = 0
            r1[w - 1] = 0
          }
        }
        // An odd height leaves the last row out.
        if h > 2 * ys.h { (d + (h - 1) * w).update(repeating: 0, count: w) }
      }
      return dx
    }
    dx.data.update(repeating: 0, count: xs.count)
    let hw = xs.spatial
    let ohw = ys.spatial
    for plane in 0..<(ys.n * ys.c) {
      let d = dx.data + plane * hw
      let g = dy.data + plane * ohw
      let idx = argmax + plane * ohw
      for p in 0..<ohw { d[Int(idx[p])] += g[p] }
    }
    return dx
  }

  /// One [h, w] plane's 2×2 stride-2 windows: maximum and its index in the plane (first in
  /// scan order on ties, NaN wins), as the general loop.
  @inline(__always)
  static func pool2x2(
    _ y: UnsafeMutablePointer<Float>, _ idx: UnsafeMutablePointer<Int32>, _ x: UnsafePointer<Float>,
    _ h: Int, _ w: Int
  ) {
    let (ho, wo) = (h / 2, w / 2)
    for i in 0..<ho {
      let r0 = x + 2 * i * w
      let r1 = r0 + w
      for j in 0..<wo {
        let p = 2 * j
        let a = r0[p]
        let b = r0[p + 1]
        let c = r1[p]
        let d = r1[p + 1]
        var best = a
        var at = 2 * i * w + p
        if !best.isNaN && (b > best || b.isNaN) {
          best = b
          at = 2 * i * w + p + 1
        }
        if !best.isNaN && (c > best || c.isNaN) {
          best = c
          at = (2 * i + 1) * w + p
        }
        if !best.isNaN && (d > best || d.isNaN) {
          best = d
          at = (2 * i + 1) * w + p + 1
        }
        y[i * wo + j] = best
        idx[i * wo + j] = Int32(at)
      }
    }
  }
}
