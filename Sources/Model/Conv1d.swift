import CBLAS

/// 1-d convolution over signals `[N, C, 1, L]`, as PyTorch's `nn.Conv1d`:
/// `y[n, o, t] = bias[o] + Σ_{c, j} weight[o, c, j] · x[n, c, t·s − p + j]` with zero padding,
/// `Lo = (L + 2p − k) / s + 1`.
///
/// Computed as im2col + one SGEMM per chunk of samples, like `Conv2d`: the chunk's windows are
/// unrolled into `col` [C·k, S·Lo] and `Y = W · col`. Backward recomputes `col`, then
/// `dW += dY · colᵀ`, `dCol = Wᵀ · dY` and col2im. `Conv1dReference` is the naive oracle.
public final class Conv1d: Layer {
  public let inChannels: Int
  public let outChannels: Int
  public let kernel: Int
  public let stride: Int
  public let padding: Int
  public let name: String

  /// Floats of the unrolled-window buffer per chunk (8 MiB); at least one sample per chunk.
  public var columnBudget = 1 << 21

  private let arena: ParameterArena
  /// Offset of weight [outChannels, inChannels, k].
  public let weightOffset: Int
  /// Offset of bias [outChannels], if any.
  public let biasOffset: Int?

  /// [N, O, 1, Lo]
  private let out = Storage()
  /// [N, C, 1, L]
  private let dInput = Storage()
  /// [C·k, S·Lo]: windows of one chunk; backward reuses it for dCol.
  private let col = Storage()
  /// [O, S·Lo]: the chunk's output (forward) or output gradient (backward), channel-major.
  private let chunkOut = Storage()
  /// The forward input, read again by backward (owned by the previous layer).
  private var input: Tensor?

  /// - Parameters:
  ///   - name: the state-dict prefix; registers `"\(name).weight"` [O, C, k] and, with `bias`,
  ///     `"\(name).bias"`, both with PyTorch's default U(±1/√(C·k)) initialisation.
  public init(
    arena: ParameterArena, name: String, inChannels: Int, outChannels: Int, kernel: Int,
    stride: Int = 1, padding: Int = 0, bias: Bool
  ) {
    precondition(inChannels > 0 && outChannels > 0 && kernel > 0 && stride > 0 && padding >= 0)
    self.arena = arena
    self.name = name
    self.inChannels = inChannels
    self.outChannels = outChannels
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
    let fanIn = inChannels * kernel
    weightOffset = arena.register(
      "\(name).weight", shape: [outChannels, inChannels, kernel], kind: .weight,
      initializer: .uniformFanIn(fanIn))
    biasOffset =
      bias
      ? arena.register(
        "\(name).bias", shape: [outChannels], kind: .biasOrNorm, initializer: .uniformFanIn(fanIn))
      : nil
  }

  /// The output shape for an input shape `[N, C, 1, L]`.
  public func outputShape(_ s: Shape) -> Shape {
    Shape(s.n, outChannels, 1, Conv1dReference.outputLength(s.w, kernel: kernel, stride: stride, padding: padding))
  }

  private func chunkSamples(_ n: Int, _ rows: Int, _ lo: Int) -> Int {
    max(1, min(n, columnBudget / max(1, rows * lo)))
  }

  private func check(_ x: Shape) throws {
    guard x.c == inChannels, x.h == 1 else {
      throw LayerShapeError(layer: name, reason: "input \(x), expected [N, \(inChannels), 1, L]")
    }
    guard outputShape(x).w > 0 else {
      throw LayerShapeError(layer: name, reason: "input \(x) too short for kernel \(kernel)")
    }
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    try check(x.shape)
    let ys = outputShape(x.shape)
    input = x
    let y = out.tensor(ys)
    let n = x.shape.n, rows = inChannels * kernel, lo = ys.w, o = outChannels
    let chunk = chunkSamples(n, rows, lo)
    let colp = col.ensure(rows * chunk * lo)
    let tmp = chunk > 1 ? chunkOut.ensure(o * chunk * lo) : chunkOut.data
    let w = arena.params + weightOffset
    let b: UnsafeMutablePointer<Float>? = biasOffset.map { arena.params + $0 }
    var s0 = 0
    while s0 < n {
      let sc = min(chunk, n - s0)
      let cols = sc * lo
      im2col(colp, x.data + s0 * x.shape.perSample, samples: sc, l: x.shape.w, lo: lo)
      // One sample's [O, Lo] block is already NCHW: write it in place.
      let dst = sc == 1 ? y.data + s0 * o * lo : tmp
      gemm(false, false, o, cols, rows, w, rows, colp, cols, 0, dst, cols)
      for s in 0..<sc {
        for oc in 0..<o {
          let yo = y.data + ((s0 + s) * o + oc) * lo
          let bv = b?[oc] ?? 0
          if sc == 1 {
            if b != nil { for t in 0..<lo { yo[t] += bv } }
          } else {
            let src = tmp + oc * cols + s * lo
            for t in 0..<lo { yo[t] = src[t] + bv }
          }
        }
      }
      s0 += sc
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let ys = outputShape(x.shape)
    guard dy.shape == ys else { throw LayerShapeError(layer: name, reason: "dy \(dy.shape), expected \(ys)") }
    let dx = dInput.tensor(x.shape)
    dx.data.update(repeating: 0, count: x.count)
    let n = x.shape.n, rows = inChannels * kernel, lo = ys.w, o = outChannels
    let chunk = chunkSamples(n, rows, lo)
    let colp = col.ensure(rows * chunk * lo)
    let tmp = chunk > 1 ? chunkOut.ensure(o * chunk * lo) : chunkOut.data
    let w = arena.params + weightOffset
    let dw = arena.grads + weightOffset
    let db: UnsafeMutablePointer<Float>? = biasOffset.map { arena.grads + $0 }
    var s0 = 0
    while s0 < n {
      let sc = min(chunk, n - s0)
      let cols = sc * lo
      // dY of the chunk as [O, S·Lo].
      let g: UnsafeMutablePointer<Float>
      if sc == 1 {
        g = dy.data + s0 * o * lo
      } else {
        g = tmp
        for s in 0..<sc {
          for oc in 0..<o {
            (tmp + oc * cols + s * lo).update(from: dy.data + ((s0 + s) * o + oc) * lo, count: lo)
          }
        }
      }
      if let db {
        for oc in 0..<o {
          let r = g + oc * cols
          var acc: Float = 0
          for t in 0..<cols { acc += r[t] }
          db[oc] += acc
        }
      }
      im2col(colp, x.data + s0 * x.shape.perSample, samples: sc, l: x.shape.w, lo: lo)
      // dW [O, C·k] += dY [O, cols] · colᵀ [cols, C·k]
      gemm(false, true, o, rows, cols, g, cols, colp, cols, 1, dw, rows)
      // dCol [C·k, cols] = Wᵀ · dY, into the window buffer (no longer needed).
      gemm(true, false, rows, cols, o, w, rows, g, cols, 0, colp, cols)
      col2im(dx.data + s0 * x.shape.perSample, colp, samples: sc, l: x.shape.w, lo: lo)
      s0 += sc
    }
    return dx
  }

  /// C = op(A)·op(B) + beta·C: OpenBLAS in fp32 (as this layer always ran), Parallax's bf16
  /// GEMM when the arena asks for bf16 operands (`ParameterArena.gemmPrecision`).
  private func gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
  ) {
    if arena.gemmPrecision == .bf16 {
      Gemm.sgemm(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
        c: c, ldc: ldc, precision: .bf16)
      return
    }
    cblas_sgemm(
      CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n),
      Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  /// The output positions `tLo..<tHi` whose input position `t·stride − padding + j` lies in
  /// `0..<l` (the rest read zero padding).
  private func validRange(_ j: Int, l: Int, lo: Int) -> (Int, Int) {
    let low = padding - j  // t·stride ≥ low
    let high = l - 1 + padding - j  // t·stride ≤ high
    if high < 0 { return (0, 0) }
    let tLo = low <= 0 ? 0 : (low + stride - 1) / stride
    return (min(tLo, lo), min(lo, high / stride + 1))
  }

  /// Unrolls `samples` consecutive signals of `src` [S, C, 1, L] into `dst` [C·k, S·Lo]:
  /// row `c·k + j`, column `s·Lo + t`.
  private func im2col(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, samples: Int, l: Int, lo: Int) {
    let cols = samples * lo
    for c in 0..<inChannels {
      for j in 0..<kernel {
        let row = dst + (c * kernel + j) * cols
        let (tLo, tHi) = validRange(j, l: l, lo: lo)
        for s in 0..<samples {
          let r = row + s * lo
          let line = src + (s * inChannels + c) * l - padding + j
          if tLo >= tHi {
            r.update(repeating: 0, count: lo)
            continue
          }
          for t in 0..<tLo { r[t] = 0 }
          if stride == 1 {
            (r + tLo).update(from: line + tLo, count: tHi - tLo)
          } else {
            for t in tLo..<tHi { r[t] = line[t * stride] }
          }
          for t in tHi..<lo { r[t] = 0 }
        }
      }
    }
  }

  /// Adds the columns of `src` [C·k, S·Lo] back into `dst` [S, C, 1, L] (the adjoint of
  /// `im2col`).
  private func col2im(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, samples: Int, l: Int, lo: Int) {
    let cols = samples * lo
    for c in 0..<inChannels {
      for j in 0..<kernel {
        let row = src + (c * kernel + j) * cols
        let (tLo, tHi) = validRange(j, l: l, lo: lo)
        if tLo >= tHi { continue }
        for s in 0..<samples {
          let r = row + s * lo
          let line = dst + (s * inChannels + c) * l - padding + j
          for t in tLo..<tHi { line[t * stride] += r[t] }
        }
      }
    }
  }
}
