/// Transposed 2-d convolution, as PyTorch's `nn.ConvTranspose2d` (no groups, dilation or
/// output padding): the input gradient of a `Conv2d` with the same kernel, stride and padding,
/// used by decoders to double a feature map's size (`k = 4, s = 2, p = 1`).
///
/// `weight` is `[in, out, k, k]` (PyTorch's layout) and the output side is
/// `(H − 1)·s − 2p + k`. Per sample, `cols = Wᵀ·x` (`[out·k·k, H·W]`, one GEMM) is scattered
/// into the output (col2im); backward gathers `dy` (im2col) and takes `dx = W·dcols` and
/// `dW += x·dcolsᵀ` (two GEMMs). `ConvTranspose2d.reference` is the naive loop twin.
public final class ConvTranspose2d: Layer {
  public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
  public let name: String
  private let arena: ParameterArena
  /// Offset of weight [in, out, k, k].
  public let weightOffset: Int
  public let biasOffset: Int?

  private let out = Storage()
  private let dInput = Storage()
  private let cols = Storage()
  private var input: Tensor?

  /// - Parameter name: registers `"\(name).weight"` and, with `bias`, `"\(name).bias"`, both
  ///   U(±1/√(out·k·k)) as PyTorch initialises them (its fan-in of a transposed weight).
  public init(
    arena: ParameterArena, name: String, inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1,
    padding: Int = 0, bias: Bool = true
  ) {
    precondition(inChannels > 0 && outChannels > 0 && kernel > 0 && stride > 0 && padding >= 0)
    self.arena = arena
    self.name = name
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
    let fanIn = outChannels * kernel * kernel
    weightOffset = arena.register(
      "\(name).weight", shape: [inChannels, outChannels, kernel, kernel], kind: .weight,
      initializer: .uniformFanIn(fanIn))
    biasOffset =
      bias
      ? arena.register("\(name).bias", shape: [outChannels], kind: .biasOrNorm, initializer: .uniformFanIn(fanIn))
      : nil
  }

  /// Output side for an input side `size`.
  public func outputSize(_ size: Int) -> Int { (size - 1) * stride - 2 * padding + kernel }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let s = x.shape
    guard s.c == inChannels, outputSize(s.h) > 0, outputSize(s.w) > 0 else {
      throw LayerShapeError(
        layer: name, reason: "input \(s), expected [N, \(inChannels), H, W] with (H − 1)·\(stride) − \(2 * padding) + \(kernel) > 0")
    }
    input = x
    let ho = outputSize(s.h), wo = outputSize(s.w)
    let y = out.tensor(Shape(s.n, outChannels, ho, wo))
    let ckk = outChannels * kernel * kernel, hw = s.h * s.w
    let c = cols.tensor(Shape(1, ckk, s.h, s.w))
    let w = arena.params + weightOffset
    for n in 0..<s.n {
      Gemm.sgemm(
        transA: true, transB: false, m: ckk, n: hw, k: inChannels, alpha: 1, a: w, lda: ckk,
        b: x.data + n * inChannels * hw, ldb: hw, beta: 0, c: c.data, ldc: hw,
        precision: arena.gemmPrecision)
      let yn = y.data + n * outChannels * ho * wo
      yn.update(repeating: 0, count: outChannels * ho * wo)
      scatter(c.data, h: s.h, w: s.w, into: yn, ho: ho, wo: wo)
      if let b = biasOffset {
        for o in 0..<outChannels {
          let v = arena.params[b + o]
          let plane = yn + o * ho * wo
          for i in 0..<(ho * wo) { plane[i] += v }
        }
      }
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let x = input else { throw LayerShapeError(layer: name, reason: "backward before forward") }
    let s = x.shape
    let ho = outputSize(s.h), wo = outputSize(s.w)
    guard dy.shape == Shape(s.n, outChannels, ho, wo) else {
      throw LayerShapeError(layer: name, reason: "gradient \(dy.shape), expected \(Shape(s.n, outChannels, ho, wo))")
    }
    let dx = dInput.tensor(s)
    let ckk = outChannels * kernel * kernel, hw = s.h * s.w
    let c = cols.tensor(Shape(1, ckk, s.h, s.w))
    let w = arena.params + weightOffset
    let dw = arena.grads + weightOffset
    for n in 0..<s.n {
      let dyn = dy.data + n * outChannels * ho * wo
      gather(dyn, ho: ho, wo: wo, into: c.data, h: s.h, w: s.w)
      // dx_n [in, HW] = W [in, ckk] · dcols [ckk, HW]
      Gemm.sgemm(
        transA: false, transB: false, m: inChannels, n: hw, k: ckk, alpha: 1, a: w, lda: ckk, b: c.data, ldb: hw,
        beta: 0, c: dx.data + n * inChannels * hw, ldc: hw, precision: arena.gemmPrecision)
      // dW [in, ckk] += x_n [in, HW] · dcolsᵀ
      Gemm.sgemm(
        transA: false, transB: true, m: inChannels, n: ckk, k: hw, alpha: 1, a: x.data + n * inChannels * hw,
        lda: hw, b: c.data, ldb: hw, beta: 1, c: dw, ldc: ckk, precision: arena.gemmPrecision)
      if let b = biasOffset {
        for o in 0..<outChannels {
          var acc: Float = 0
          let plane = dyn + o * ho * wo
          for i in 0..<(ho * wo) { acc += plane[i] }
          arena.grads[b + o] += acc
        }
      }
    }
    return dx
  }

  /// col2im: adds `cols[(o, ki, kj), (i, j)]` to `y[o, i·s − p + ki, j·s − p + kj]`.
  private func scatter(_ cols: UnsafePointer<Float>, h: Int, w: Int, into y: UnsafeMutablePointer<Float>, ho: Int, wo: Int) {
    for o in 0..<outChannels {
      for ki in 0..<kernel {
        for kj in 0..<kernel {
          let row = cols + ((o * kernel + ki) * kernel + kj) * h * w
          for i in 0..<h {
            let oy = i * stride - padding + ki
            guard oy >= 0 && oy < ho else { continue }
            for j in 0..<w {
              let ox = j * stride - padding + kj
              if ox >= 0 && ox < wo { y[(o * ho + oy) * wo + ox] += row[i * w + j] }
            }
          }
        }
      }
    }
  }

  /// im2col of `dy`, the adjoint of `scatter`.
  private func gather(_ dy: UnsafePointer<Float>, ho: Int, wo: Int, into cols: UnsafeMutablePointer<Float>, h: Int, w: Int) {
    for o in 0..<outChannels {
      for ki in 0..<kernel {
        for kj in 0..<kernel {
          let row = cols + ((o * kernel + ki) * kernel + kj) * h * w
          for i in 0..<h {
            let oy = i * stride - padding + ki
            for j in 0..<w {
              let ox = j * stride - padding + kj
              row[i * w + j] = oy >= 0 && oy < ho && ox >= 0 && ox < wo ? dy[(o * ho + oy) * wo + ox] : 0
            }
          }
        }
      }
    }
  }

  /// The definition as loops: `y[n, o, i·s − p + ki, j·s − p + kj] += x[n, c, i, j]·W[c, o, ki, kj]`
  /// plus bias — the naive twin the GEMM path is tested against.
  public static func reference(
    x: [Float], shape s: Shape, weight: [Float], bias: [Float]?, outChannels: Int, kernel: Int, stride: Int,
    padding: Int
  ) -> (y: [Float], shape: Shape) {
    let ho = (s.h - 1) * stride - 2 * padding + kernel, wo = (s.w - 1) * stride - 2 * padding + kernel
    var y = [Float](repeating: 0, count: s.n * outChannels * ho * wo)
    for n in 0..<s.n {
      for o in 0..<outChannels {
        for i in 0..<(ho * wo) { y[(n * outChannels + o) * ho * wo + i] = bias?[o] ?? 0 }
        for c in 0..<s.c {
          for i in 0..<s.h {
            for j in 0..<s.w {
              let v = x[((n * s.c + c) * s.h + i) * s.w + j]
              for ki in 0..<kernel {
                let oy = i * stride - padding + ki
                guard oy >= 0 && oy < ho else { continue }
                for kj in 0..<kernel {
                  let ox = j * stride - padding + kj
                  guard ox >= 0 && ox < wo else { continue }
                  y[((n * outChannels + o) * ho + oy) * wo + ox] += v * weight[((c * outChannels + o) * kernel + ki) * kernel + kj]
                }
              }
            }
          }
        }
      }
    }
    return (y, Shape(s.n, outChannels, ho, wo))
  }
}
