import CKernels

/// 2-d convolution (square kernel, equal stride and zero padding on both axes), as PyTorch's
/// `nn.Conv2d`: `y[n, o] = bias[o] + Σ_c weight[o, c] ⋆ x[n, c]`.
///
/// Computed as im2col + one SGEMM per chunk of samples: the chunk's patches are unrolled into
/// `col` [C·k·k, S·Ho·Wo] and `Y = W · col`. Chunks hold as many samples as fit in
/// `columnBudget` floats, so deep layers with small maps still get one large GEMM while early
/// layers do not unroll the whole batch. The GEMM writes the output (plus bias) and reads
/// dY straight in NCHW memory (`GemmColumns`), without relayout copies. Backward recomputes `col` (memory over time), then
/// `dW += dY · colᵀ`, `dCol = Wᵀ · dY` and col2im. `Conv2dReference` is the naive oracle.
public final class Conv2d: Layer {
  public let inChannels: Int
  public let outChannels: Int
  public let kernel: Int
  public let stride: Int
  public let padding: Int
  public let name: String

  /// Floats of the unrolled-patch buffer per chunk (8 MiB); at least one sample per chunk.
  public var columnBudget = 1 << 21
  /// `false` skips dX (`Wᵀ·dY` and col2im) for a first layer whose input needs no gradient;
  /// `backward` then returns zeros.
  public var computesInputGradient = true
  /// Stride-1 and stride-2 im2col/col2im through the C kernels (`px_im2col_s1`/`_s2`,
  /// `px_col2im_s1`/`_s2`; `Gemm.cKernels`); `false` runs the Swift loops, which tests
  /// compare against.
  public var usesFastKernels = Gemm.cKernels
  /// With the fast kernels, forward packs the GEMM's B straight from x
  /// (`Gemm.sgemmImplicitConv`) and the weight gradient packs colᵀ straight from x
  /// (`sgemmImplicitConvWeightGradient`): no column buffer (kernels up to 7; strided and
  /// not-"same" shapes gather). Stride-1 "same" convolutions (`kernel = 2·padding + 1`) also
  /// compute dX as the forward convolution of dY with the flipped, transposed weights (no
  /// `Wᵀ·dY` + col2im); others run `Wᵀ·dY` + col2im. `false` runs im2col + GEMM (+ col2im).
  public var usesImplicitGemm = true
  /// With `usesImplicitGemm`, also compute dX implicitly (convolution of dY with the flipped
  /// weights: no `Wᵀ·dY` column matrix, no col2im). Matches im2col + col2im to rounding
  /// (`FusedKernelTests`); the rounding differs, which can flip near-tied max-pool choices in
  /// later steps (see `RankInvarianceTests`).
  public var usesImplicitInputGradient = true

  let arena: ParameterArena
  /// Offset of weight [outChannels, inChannels, k, k].
  public let weightOffset: Int
  /// Offset of bias [outChannels], if any.
  public let biasOffset: Int?

  /// [N, O, Ho, Wo]
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  /// [C·k·k, S·Ho·Wo]: patches of one chunk; backward reuses it for dCol.
  private let col = Storage()
  /// [C, O·k·k]: `W'[c, (o·k + ki)·k + kj] = W[o, c, k−1−ki, k−1−kj]` for the implicit dX.
  private let flipped = Storage()
  /// The forward input, read again by backward (owned by the previous layer).
  private var input: Tensor?

  /// - Parameters:
  ///   - name: the state-dict prefix; registers `"\(name).weight"` and, with `bias`,
  ///     `"\(name).bias"`, both with PyTorch's default U(±1/√(C·k·k)) initialisation.
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
    let fanIn = inChannels * kernel * kernel
    weightOffset = arena.register(
      "\(name).weight", shape: [outChannels, inChannels, kernel, kernel], kind: .weight,
      initializer: .uniformFanIn(fanIn))
    biasOffset =
      bias
      ? arena.register(
        "\(name).bias", shape: [outChannels], kind: .biasOrNorm, initializer: .uniformFanIn(fanIn))
      : nil
  }

  /// The output shape for an input shape.
  public func outputShape(_ s: Shape) -> Shape {
    Shape(
      s.n, outChannels,
      Conv2dReference.outputSize(s.h, kernel: kernel, stride: stride, padding: padding),
      Conv2dReference.outputSize(s.w, kernel: kernel, stride: stride, padding: padding))
  }

  private func geometry(_ s: Shape) -> ConvGeometry {
    ConvGeometry(
      channels: s.c, height: s.h, width: s.w, kernel: kernel, stride: stride, padding: padding)
  }

  /// Whether forward and the weight gradient run as implicit GEMMs on input shape `s`.
  private func implicit(_ s: Shape) -> Bool {
    usesImplicitGemm && usesFastKernels && geometry(s).runsImplicitly(samples: s.n)
  }

  private func chunkSamples(_ n: Int, _ patchRows: Int, _ spatialOut: Int) -> Int {
    max(1, min(n, columnBudget / max(1, patchRows * spatialOut)))
  }

  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    precondition(x.shape.c == inChannels, "\(name): input \(x.shape), expected C = \(inChannels)")
    let ys = outputShape(x.shape)
    precondition(ys.h > 0 && ys.w > 0, "\(name): input \(x.shape) too small for kernel \(kernel)")
    input = x
    let y = out.tensor(ys)
    let n = x.shape.n
    let rows = inChannels * kernel * kernel
    let hw = ys.spatial
    let o = outChannels
    let w = arena.params + weightOffset
    let b: UnsafeMutablePointer<Float>? = biasOffset.map { arena.params + $0 }
    // The chunk's output [O, S·Ho·Wo] seen over NCHW memory: column block s is sample s.
    let nchw = GemmColumns(block: hw, blockStride: o * hw)
    if implicit(x.shape) {
      Gemm.sgemmImplicitConv(
        m: o, samples: n, geometry(x.shape), alpha: 1, a: w, lda: rows, x: x.data, beta: 0,
        c: y.data, ldc: hw, cColumns: nchw, bias: b, precision: arena.gemmPrecision)
      return y
    }
    let chunk = chunkSamples(n, rows, hw)
    let colp = col.ensure(rows * chunk * hw)
    // One call per sample where the GEMM's rounding depends on the call's width, so that a
    // sample's output does not depend on the per-rank batch (`Gemm.dependsOnCallShape`).
    let perSample = Gemm.dependsOnCallShape(arena.gemmPrecision)
    var s0 = 0
    while s0 < n {
      let sc = min(chunk, n - s0)
      let cols = sc * hw
      im2col(colp, x.data + s0 * x.shape.perSample, samples: sc, x.shape, ys)
      if perSample {
        for s in 0..<sc {
          Gemm.sgemm(
            transA: false, transB: false, m: o, n: hw, k: rows, alpha: 1,
            a: w, lda: rows, aColumns: .plain, b: colp + s * hw, ldb: cols, bColumns: .plain, beta: 0,
            c: y.data + (s0 + s) * o * hw, ldc: hw, cColumns: .plain, bias: b, precision: .fp32)
        }
      } else {
        Gemm.sgemm(
          transA: false, transB: false, m: o, n: cols, k: rows, alpha: 1,
          a: w, lda: rows, aColumns: .plain, b: colp, ldb: cols, bColumns: .plain, beta: 0,
          c: y.data + s0 * o * hw, ldc: hw, cColumns: nchw, bias: b,
          precision: arena.gemmPrecision)
      }
      s0 += sc
    }
    return y
  }

  public func backward(_ dy: Tensor) throws -> Tensor {
    try backward(dy, accumulatingInto: nil)
  }

  /// Backward with dX added to `target` (the input's shape) instead of written to a buffer of
  /// the layer's own; returns `target` (unchanged when `computesInputGradient` is false). A
  /// residual block adds its two branches' gradients this way without a separate pass.
  public func backward(_ dy: Tensor, accumulatingInto target: Tensor?) throws -> Tensor {
    guard let x = input else { preconditionFailure("\(name): backward before forward") }
    let ys = outputShape(x.shape)
    precondition(dy.shape == ys, "\(name): dy \(dy.shape), expected \(ys)")
    precondition(target.map { $0.shape == x.shape } ?? true, "\(name): target shape")
    let dx = target ?? dInput.tensor(x.shape)
    let implicit = implicit(x.shape)
    let dyGeometry = ConvGeometry(
      channels: outChannels, height: ys.h, width: ys.w, kernel: kernel, stride: 1,
      padding: padding)
    let implicitDX =
      implicit && geometry(x.shape).isSame && usesImplicitInputGradient && computesInputGradient
      && dyGeometry.runsImplicitly(samples: x.shape.n)
    if !implicitDX && target == nil { dx.data.update(repeating: 0, count: x.count) }
    let n = x.shape.n
    let rows = inChannels * kernel * kernel
    let hw = ys.spatial
    let o = outChannels
    let chunk = chunkSamples(n, rows, hw)
    let needsDCol = computesInputGradient && !implicitDX
    // The column buffer holds patches (explicit dW) or dCol (explicit dX); implicit needs none.
    let colp = implicit && !needsDCol ? col.data : col.ensure(rows * chunk * hw)
    let w = arena.params + weightOffset
    let dw = arena.grads + weightOffset
    let db: UnsafeMutablePointer<Float>? = biasOffset.map { arena.grads + $0 }
    // dY of a chunk as [O, S·Ho·Wo], read in place from NCHW memory.
    let nchw = GemmColumns(block: hw, blockStride: o * hw)
    if let db, usesFastKernels {
      // Σ over each channel's planes, in Double across planes (px_sum: Float lanes within one).
      Parallel.ranges(o, costPerItem: n * hw) { lo, hi in
        for oc in lo..<hi {
          var acc = 0.0
          for s in 0..<n { px_sum(dy.data + (s * o + oc) * hw, hw, &acc) }
          db[oc] += Float(acc)
        }
      }
    } else if let db {
      for s in 0..<n {
        for oc in 0..<o {
          let r = dy.data + (s * o + oc) * hw
          var acc: Float = 0
          for p in 0..<hw { acc += r[p] }
          db[oc] += acc
        }
      }
    }
    let precision = arena.gemmPrecision
    // Per-sample calls as in forward (their operands are then plain, so OpenBLAS takes them
    // as they are), summing dW over the samples in a fixed order.
    let perSample = !implicit && Gemm.dependsOnCallShape(precision)
    // The NHWC weight-gradient kernel is fp32 only; bf16 packs colᵀ from x in the implicit GEMM.
    if implicit && precision == .fp32
      && Gemm.weightGradientNHWCApplies(m: o, samples: n, geometry(x.shape))
    {
      Gemm.sgemmConvWeightGradientNHWC(
        m: o, samples: n, geometry(x.shape), dy: dy.data, x: x.data, dw: dw)
    } else if implicit {
      // dW [O, C·k·k] += dY [O, N·Ho·Wo] · colᵀ, colᵀ packed straight from x.
      Gemm.sgemmImplicitConvWeightGradient(
        m: o, samples: n, geometry(x.shape), alpha: 1, dy: dy.data, lda: hw, aColumns: nchw,
        x: x.data, beta: 1, c: dw, ldc: rows, precision: precision)
    }
    var s0 = 0
    while s0 < n && (!implicit || needsDCol) {
      let sc = min(chunk, n - s0)
      let cols = sc * hw
      let g = dy.data + s0 * o * hw
      if !implicit {
        im2col(colp, x.data + s0 * x.shape.perSample, samples: sc, x.shape, ys)
      }
      for s in 0..<sc where perSample {
        Gemm.sgemm(
          transA: false, transB: true, m: o, n: rows, k: hw, alpha: 1,
          a: g + s * o * hw, lda: hw, aColumns: .plain, b: colp + s * hw, ldb: cols, bColumns: .plain, beta: 1,
          c: dw, ldc: rows, cColumns: .plain, bias: nil, precision: precision)
      }
      if !implicit && !perSample {
        // dW [O, C·k·k] += dY [O, cols] · colᵀ [cols, C·k·k]
        Gemm.sgemm(
          transA: false, transB: true, m: o, n: rows, k: cols, alpha: 1,
          a: g, lda: hw, aColumns: nchw, b: colp, ldb: cols, bColumns: .plain, beta: 1,
          c: dw, ldc: rows, cColumns: .plain, bias: nil, precision: precision)
      }
      guard needsDCol else {
        s0 += sc
        continue
      }
      // dCol [C·k·k, cols] = Wᵀ · dY, into the patch buffer (no longer needed).
      for s in 0..<sc where perSample {
        Gemm.sgemm(
          transA: true, transB: false, m: rows, n: hw, k: o, alpha: 1,
          a: w, lda: rows, aColumns: .plain, b: g + s * o * hw, ldb: hw, bColumns: .plain, beta: 0,
          c: colp + s * hw, ldc: cols, cColumns: .plain, bias: nil, precision: precision)
      }
      if !perSample {
        Gemm.sgemm(
          transA: true, transB: false, m: rows, n: cols, k: o, alpha: 1,
          a: w, lda: rows, aColumns: .plain, b: g, ldb: hw, bColumns: nchw, beta: 0,
          c: colp, ldc: cols, cColumns: .plain, bias: nil, precision: precision)
      }
      col2im(dx.data + s0 * x.shape.perSample, colp, samples: sc, x.shape, ys)
      s0 += sc
    }
    if implicitDX {
      // dX = conv(dY, W'): a stride-1 "same" convolution of dY's O channels.
      let kk = kernel * kernel
      let wf = flipped.ensure(inChannels * o * kk)
      for oc in 0..<o {
        for c in 0..<inChannels {
          let src = w + (oc * inChannels + c) * kk
          let dst = wf + c * o * kk + oc * kk
          for q in 0..<kk { dst[q] = src[kk - 1 - q] }
        }
      }
      Gemm.sgemmImplicitConv(
        m: inChannels, samples: n, dyGeometry, alpha: 1, a: wf, lda: o * kk, x: dy.data,
        beta: target == nil ? 0 : 1, c: dx.data, ldc: hw,
        cColumns: GemmColumns(block: hw, blockStride: inChannels * hw), bias: nil,
        precision: precision)
    }
    return dx
  }

  /// The output columns `jLo..<jHi` whose input column `j·stride − padding + kj` lies in
  /// `0..<w` (the rest read zero padding).
  private func validColumns(_ kj: Int, w: Int, wo: Int) -> (Int, Int) {
    let lo = padding - kj  // j·stride ≥ lo
    let hi = w - 1 + padding - kj  // j·stride ≤ hi
    if hi < 0 { return (0, 0) }
    let jLo = lo <= 0 ? 0 : (lo + stride - 1) / stride
    return (min(jLo, wo), min(wo, hi / stride + 1))
  }

  /// Unrolls `samples` consecutive samples of `src` [S, C, H, W] into `dst`
  /// [C·k·k, S·Ho·Wo]: row `(c·k + ki)·k + kj`, column `s·Ho·Wo + i·Wo + j`.
  private func im2col(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, samples: Int,
    _ xs: Shape, _ ys: Shape
  ) {
    let (h, w, ho, wo, k, st, pad) = (xs.h, xs.w, ys.h, ys.w, kernel, stride, padding)
    if usesFastKernels && (st == 1 || st == 2) {
      let perChannel = k * k * samples * ho * wo
      Parallel.ranges(inChannels, costPerItem: perChannel) { c0, c1 in
        if st == 1 {
          px_im2col_s1(dst, src, samples, inChannels, h, w, k, pad, ho, wo, c0, c1)
        } else {
          px_im2col_s2(dst, src, samples, inChannels, h, w, k, pad, ho, wo, c0, c1)
        }
      }
      return
    }
    let cols = samples * ho * wo
    for c in 0..<inChannels {
      for ki in 0..<k {
        for kj in 0..<k {
          let row = dst + ((c * k + ki) * k + kj) * cols
          let (jLo, jHi) = validColumns(kj, w: w, wo: wo)
          for s in 0..<samples {
            let plane = src + (s * inChannels + c) * h * w
            for i in 0..<ho {
              let r = row + (s * ho + i) * wo
              let y = i * st - pad + ki
              if y < 0 || y >= h || jLo >= jHi {
                r.update(repeating: 0, count: wo)
                continue
              }
              for j in 0..<jLo { r[j] = 0 }
              let line = plane + y * w - pad + kj
              if st == 1 {
                (r + jLo).update(from: line + jLo, count: jHi - jLo)
              } else {
                for j in jLo..<jHi { r[j] = line[j * st] }
              }
              for j in jHi..<wo { r[j] = 0 }
            }
          }
        }
      }
    }
  }

  /// Adds the columns of `src` [C·k·k, S·Ho·Wo] back into `dst` [S, C, H, W] (the adjoint of
  /// `im2col`).
  private func col2im(
    _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, samples: Int,
    _ xs: Shape, _ ys: Shape
  ) {
    let (h, w, ho, wo, k, st, pad) = (xs.h, xs.w, ys.h, ys.w, kernel, stride, padding)
    if usesFastKernels && (st == 1 || st == 2) {
      let perChannel = k * k * samples * ho * wo
      Parallel.ranges(inChannels, costPerItem: perChannel) { c0, c1 in
        if st == 1 {
          px_col2im_s1(dst, src, samples, inChannels, h, w, k, pad, ho, wo, c0, c1)
        } else {
          px_col2im_s2(dst, src, samples, inChannels, h, w, k, pad, ho, wo, c0, c1)
        }
      }
      return
    }
    let cols = samples * ho * wo
    for c in 0..<inChannels {
      for ki in 0..<k {
        for kj in 0..<k {
          let row = src + ((c * k + ki) * k + kj) * cols
          let (jLo, jHi) = validColumns(kj, w: w, wo: wo)
          if jLo >= jHi { continue }
          for s in 0..<samples {
            let plane = dst + (s * inChannels + c) * h * w
            for i in 0..<ho {
              let y = i * st - pad + ki
              if y < 0 || y >= h { continue }
              let r = row + (s * ho + i) * wo
              let line = plane + y * w - pad + kj
              for j in jLo..<jHi { line[j * st] += r[j] }
            }
          }
        }
      }
    }
  }
}
