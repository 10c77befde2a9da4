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
}
