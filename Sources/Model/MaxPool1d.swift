/// 1-d max pooling over signals `[N, C, 1, L]` without padding in floor mode, as PyTorch's
/// `nn.MaxPool1d(kernel, stride)`: `Lo = (L − k) / s + 1` (28 → 9 for k = s = 3). Forward saves
/// the position of each maximum (the first on ties, NaN wins, as PyTorch); backward routes
/// `dy` there.
public final class MaxPool1d: Layer {
  public let kernel: Int
  public let stride: Int

  /// [N, C, 1, Lo]
  private let out = Storage()
  /// [N, C, 1, L]
  private let dInput = Storage()
  /// [N, C, Lo]: index of the maximum within its input row.
  private var argmax: UnsafeMutablePointer<Int32> = .allocate(capacity: 1)
  private var argmaxCapacity = 1
  private var inputShape: Shape?

  public init(kernel: Int = 3, stride: Int? = nil) {
    precondition(kernel > 0 && (stride ?? kernel) > 0)
    self.kernel = kernel
    self.stride = stride ?? kernel
  }

  deinit { argmax.deallocate() }

  public func outputShape(_ s: Shape) -> Shape { Shape(s.n, s.c, 1, (s.w - kernel) / stride + 1) }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    guard x.shape.h == 1, x.shape.w >= kernel else {
      throw LayerShapeError(layer: "MaxPool1d", reason: "input \(x.shape), expected [N, C, 1, L ≥ \(kernel)]")
    }
    let ys = outputShape(x.shape)
    let y = out.tensor(ys)
    if ys.count > argmaxCapacity {
      argmax.deallocate()
      argmax = .allocate(capacity: ys.count)
      argmaxCapacity = ys.count
    }
    inputShape = x.shape
    let (l, lo, k, s) = (x.shape.w, ys.w, kernel, stride)
    for row in 0..<(ys.n * ys.c) {
      let src = x.data + row * l
      let dst = y.data + row * lo
      let idx = argmax + row * lo
      for t in 0..<lo {
        var best = -Float.infinity
        var at = t * s
        for j in 0..<k {
          let v = src[t * s + j]
          if v > best || v.isNaN {
            best = v
            at = t * s + j
            if v.isNaN { break }
          }
        }
        dst[t] = best
        idx[t] = Int32(at)
      }
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let xs = inputShape else { preconditionFailure("MaxPool1d: backward before forward") }
    let ys = outputShape(xs)
    guard dy.shape == ys else { throw LayerShapeError(layer: "MaxPool1d", reason: "dy \(dy.shape), expected \(ys)") }
    let dx = dInput.tensor(xs)
    dx.data.update(repeating: 0, count: xs.count)
    for row in 0..<(ys.n * ys.c) {
      let d = dx.data + row * xs.w
      let g = dy.data + row * ys.w
      let idx = argmax + row * ys.w
      for t in 0..<ys.w { d[Int(idx[t])] += g[t] }
    }
    return dx
  }
}
