import CKernels
import Foundation

/// Batch normalisation over `[N, C, H, W]` (BN2d) or `[N, C, 1, 1]` (BN1d): statistics per
/// channel over the `M = N·H·W` values of that channel (Ioffe & Szegedy 2015; PyTorch's
/// `BatchNorm1d/2d`).
///
/// Training: `μ = Σx/M`, `σ² = Σx²/M − μ²` (biased), `x̂ = (x − μ)/√(σ² + ε)`,
/// `y = γ·x̂ + β`; running statistics move by `r ← (1 − momentum)·r + momentum·s`, with the
/// **unbiased** variance `σ²·M/(M − 1)` for `running_var`, as PyTorch does.
/// Evaluation: the running statistics normalise.
///
/// **Sync mode** (`collective` non-nil, DESIGN.md invariant 4): forward all-reduces the packed
/// per-channel moments `[M, Σx_c…, Σx²_c…]` (Double, one call), backward all-reduces
/// `[Σdy_c…, Σ(dy·x̂)_c…]` (Double, one call), so a global batch split over W ranks
/// normalises with global statistics and `dx` equals the rows of one rank holding the whole
/// batch. `dweight`/`dbias` accumulate **this rank's** contribution (`Σ` over local rows),
/// like every other layer's parameter gradient; the data-parallel gradient reduction sums
/// them across ranks.
public final class BatchNorm: Layer {
  public let name: String
  public let channels: Int
  public let momentum: Float
  public let eps: Float
  public let collective: Collective?
  /// Per-plane C kernels (`Gemm.cKernels`; Float lanes, Double across planes) when planes
  /// hold ≥ 16 values; `false` runs the Swift loops (Double per element), which tests compare
  /// against.
  public var usesFastKernels = Gemm.cKernels
  /// `true`: the layer is BatchNorm followed by ReLU in one pass, `y = max(γ·x̂ + β, 0)`, and
  /// backward masks `dy` where `γ·x̂ + β ≤ 0` (recomputed from x̂, so no ReLU output is kept).
  /// Parameters and buffers are those of the plain layer. Encoders set it when a ReLU follows.
  public var fusedReLU = false
  /// Non-nil (`fusePool`): the layer is BatchNorm → ReLU → MaxPool(2, 2). Forward returns the
  /// pooled map and backward takes its gradient. Training with the fast kernels runs three
  /// passes over x (moments; normalise-ReLU-pool; and in backward two passes that recompute
  /// x̂ from x) and stores neither the BN output nor x̂; otherwise BN runs as the plain layer
  /// and then this pool.
  public private(set) var fusedPool: MaxPool2d?

  let arena: ParameterArena
  /// Offsets into `arena.params`/`arena.grads`: weight γ [C], bias β [C].
  let weightOffset: Int
  let biasOffset: Int
  /// Offsets into `arena.buffers`: running_mean [C], running_var [C].
  let runningMeanOffset: Int
  let runningVarOffset: Int

  /// [N, C, H, W] output y.
  private let out = Storage()
  /// [N, C, H, W] normalised input x̂ (saved for backward).
  private let xhat = Storage()
  /// [N, C, H, W] input gradient.
  private let dInput = Storage()
  /// [1 + 2C] packed reduction buffer: forward `[M, Σx, Σx²]`, backward `[Σdy, Σdy·x̂]`.
  let moments: UnsafeMutablePointer<Double>
  /// [C] 1/√(σ² + ε) used by the last forward (batch or running variance).
  private let rstd: UnsafeMutablePointer<Float>
  /// [C] the batch means of the last training forward (the fused pool recomputes x̂).
  private let mean: UnsafeMutablePointer<Float>
  /// Fused pool: the pooled output, the argmax of each window, and the input x the last
  /// forward normalised (the previous layer's output, valid until that layer's next
  /// forward), when that forward ran the fused kernels.
  private let pooled = Storage()
  private var argmax: UnsafeMutablePointer<Int32> = .allocate(capacity: 1)
  private var argmaxCapacity = 1
  private var fusedInput: Tensor?
  /// Global count M of the last training forward.
  private var lastCount: Double = 0
  private var lastShape = Shape(0, 0)
  private var lastTraining = true

  /// - Parameters:
  ///   - arena: registers `name.weight` (ones), `name.bias` (zeros) as `.biasOrNorm`, and
  ///     buffers `name.running_mean` (zeros), `name.running_var` (ones).
  ///   - channels: C.
  ///   - momentum: running-statistics momentum (PyTorch convention: weight of the new value).
  ///   - eps: added to the variance.
  ///   - collective: when non-nil, statistics are global over all ranks (sync BN).
  public init(
    arena: ParameterArena, name: String, channels: Int, momentum: Float = 0.1,
    eps: Float = 1e-5, collective: Collective? = nil
  ) {
    self.arena = arena
    self.name = name
    self.channels = channels
    self.momentum = momentum
    self.eps = eps
    self.collective = collective
    weightOffset = arena.register(
      "\(name).weight", shape: [channels], kind: .biasOrNorm, initializer: .ones)
    biasOffset = arena.register(
      "\(name).bias", shape: [channels], kind: .biasOrNorm, initializer: .zeros)
    runningMeanOffset = arena.registerBuffer(
      "\(name).running_mean", shape: [channels], initializer: .zeros)
    runningVarOffset = arena.registerBuffer(
      "\(name).running_var", shape: [channels], initializer: .ones)
    moments = .allocate(capacity: 1 + 2 * channels)
    moments.initialize(repeating: 0, count: 1 + 2 * channels)
    rstd = .allocate(capacity: channels)
    rstd.initialize(repeating: 0, count: channels)
    mean = .allocate(capacity: channels)
    mean.initialize(repeating: 0, count: channels)
  }

  deinit {
    moments.deallocate()
    rstd.deallocate()
    mean.deallocate()
    Storage.track(bytes: -(argmaxCapacity - 1) * 4)
    argmax.deallocate()
  }

  private var syncing: Collective? {
    guard let c = collective, c.size > 1 else { return nil }
    return c
  }

  /// - Parameters:
  ///   - x: [N, C, H, W] (C = `channels`).
  /// - Returns: y [N, C, H, W], owned by the layer; with `fusedPool`, the pooled
  ///   [N, C, H/2, W/2].
  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let s = x.shape
    guard s.c == channels else {
      throw LayerShapeError(
        layer: name, reason: "input \(s) has \(s.c) channels, expected \(channels)")
    }
    fusedInput = nil
    guard let pool = fusedPool else { return try normalize(x, training: training, pooling: false) }
    if s.h < 2 || s.w < 2 {
      throw LayerShapeError(layer: name, reason: "input \(s) is smaller than its 2×2 pooling window")
    }
    let y = try normalize(x, training: training, pooling: true)
    return fusedInput != nil ? y : try pool.forward(y, training: training)
  }

  /// The plain layer's forward, or with `pooling` (training, fast kernels) the fused
  /// normalise-ReLU-pool pass, which sets `fusedInput` and returns the pooled map.
  private func normalize(_ x: Tensor, training: Bool, pooling: Bool) throws -> Tensor {
    let s = x.shape
    let C = channels
    let S = s.spatial
    let N = s.n
    let y = out.tensor(s)
    let xh = xhat.ensure(s.count)
    let gamma = arena.params + weightOffset
    let beta = arena.params + biasOffset
    let rm = arena.buffers + runningMeanOffset
    let rv = arena.buffers + runningVarOffset
    lastShape = s
    lastTraining = training

    if training {
      // Local moments in Double: [M, Σx_c, Σx²_c].
      moments[0] = Double(N * S)
      let sum = moments + 1
      let sumSq = moments + 1 + C
      let fast = usesFastKernels && S >= 16
      Parallel.ranges(C, costPerItem: N * S) { cLo, cHi in
        for c in cLo..<cHi {
          var a = 0.0
          var b = 0.0
          for n in 0..<N where fast { px_sum_sumsq(x.data + (n * C + c) * S, S, &a, &b) }
          for n in 0..<N where !fast {
            let p = x.data + (n * C + c) * S
            for i in 0..<S {
              let v = Double(p[i])
              a += v
              b += v * v
            }
          }
          sum[c] = a
          sumSq[c] = b
        }
      }
      try finishMoments(s)
      if pooling && fast {
        return poolForward(x)
      }
      Parallel.ranges(N, costPerItem: C * S) { nLo, nHi in
        for n in nLo..<nHi {
          for c in 0..<C {
            let base = (n * C + c) * S
            let mu = Float(sum[c])
            let r = rstd[c]
            let g = gamma[c]
            let b = beta[c]
            if fast {
              if fusedReLU {
                px_bn_relu_forward(y.data + base, xh + base, x.data + base, S, mu, r, g, b)
              } else {
                px_bn_forward(y.data + base, xh + base, x.data + base, S, mu, r, g, b)
              }
              continue
            }
            for i in 0..<S {
              let h = (x.data[base + i] - mu) * r
              xh[base + i] = h
              y.data[base + i] = activate(g * h + b)
            }
          }
        }
      }
    } else {
      for c in 0..<C { rstd[c] = 1 / (rv[c] + eps).squareRoot() }
      for n in 0..<N {
        for c in 0..<C {
          let base = (n * C + c) * S
          let mu = rm[c]
          let r = rstd[c]
          let g = gamma[c]
          let b = beta[c]
          for i in 0..<S {
            let h = (x.data[base + i] - mu) * r
            xh[base + i] = h
            y.data[base + i] = activate(g * h + b)
          }
        }
      }
    }
    return y
  }

  /// After the local moments `[M, Σx_c…, Σx²_c…]` are in `moments` (from forward, or from
  /// `FusedConvBlock`): all-reduces them (sync mode), sets `mean`, `rstd` and the running
  /// statistics, and leaves each channel's mean in `moments[1 + c]`.
  func finishMoments(_ s: Shape) throws {
    let C = channels
    let (sum, sumSq) = (moments + 1, moments + 1 + C)
    let rm = arena.buffers + runningMeanOffset
    let rv = arena.buffers + runningVarOffset
    if let coll = syncing { try coll.allReduceSum(moments, count: 1 + 2 * C) }
    let M = moments[0]
    guard M > 1 else {
      throw LayerShapeError(
        layer: name,
        reason: "training needs more than 1 value per channel, got \(Int(M)) (input \(s))")
    }
    lastCount = M
    let m = Double(momentum)
    for c in 0..<C {
      let mu = sum[c] / M
      let variance = max(sumSq[c] / M - mu * mu, 0)
      rstd[c] = Float(1 / (variance + Double(eps)).squareRoot())
      rm[c] = Float((1 - m) * Double(rm[c]) + m * mu)
      rv[c] = Float((1 - m) * Double(rv[c]) + m * variance * M / (M - 1))
      // Reuse sum[c] as the mean for the normalisation pass.
      sum[c] = mu
      mean[c] = Float(mu)
    }
  }

  /// After this rank's `[Σdv_c…, Σ(dv·x̂)_c…]` are in `moments` (fused backward passes):
  /// all-reduces them (sync mode). `backwardCoefficients` then gives each channel's
  /// `dx = k·(dv − mdy − x̂·mdx)`.
  func finishBackwardSums() throws {
    if let coll = syncing { try coll.allReduceSum(moments, count: 2 * channels) }
  }

  /// Channel c's (k, mdy, mdx) of the training backward, from the sums in `moments`.
  func backwardCoefficients(_ c: Int) -> (k: Float, mdy: Float, mdx: Float) {
    let invM = 1 / lastCount
    let g = arena.params[weightOffset + c]
    return (g * rstd[c], Float(moments[c] * invM), Float(moments[channels + c] * invM))
  }

  /// Channel c's (mean, 1/σ, γ, β) of the last training forward.
  func transform(_ c: Int) -> (mu: Float, r: Float, g: Float, b: Float) {
    (mean[c], rstd[c], arena.params[weightOffset + c], arena.params[biasOffset + c])
  }

  /// The fused normalise-ReLU-pool pass (training, fast kernels): pooled map and argmax.
  private func poolForward(_ x: Tensor) -> Tensor {
    let s = x.shape
    let (C, h, w) = (channels, s.h, s.w)
    let ys = Shape(s.n, C, h / 2, w / 2)
    let y = pooled.tensor(ys)
    if ys.count > argmaxCapacity {
      argmax.deallocate()
      Storage.track(bytes: (ys.count - argmaxCapacity) * 4)
      argmax = .allocate(capacity: ys.count)
      argmaxCapacity = ys.count
    }
    let (gamma, beta, idx) = (arena.params + weightOffset, arena.params + biasOffset, argmax)
    Parallel.ranges(s.n * C, costPerItem: h * w) { lo, hi in
      for plane in lo..<hi {
        let c = plane % C
        px_bn_relu_pool2_forward(
          y.data + plane * ys.spatial, idx + plane * ys.spatial, x.data + plane * h * w, h, w,
          self.mean[c], self.rstd[c], gamma[c], beta[c])
      }
    }
    fusedInput = x
    return y
  }

  /// Backward of the fused pass: dy [N, C, H/2, W/2] → dx [N, C, H, W], x̂ recomputed from x.
  private func poolBackward(_ dy: Tensor, _ x: Tensor) throws -> Tensor {
    let s = x.shape
    let ys = Shape(s.n, channels, s.h / 2, s.w / 2)
    guard dy.shape == ys else {
      throw LayerShapeError(layer: name, reason: "backward got dy \(dy.shape), forward produced \(ys)")
    }
    let (C, N, h, w, S, P) = (channels, s.n, s.h, s.w, s.spatial, ys.spatial)
    let dx = dInput.tensor(s)
    let gamma = arena.params + weightOffset
    let beta = arena.params + biasOffset
    let dGamma = arena.grads + weightOffset
    let dBeta = arena.grads + biasOffset
    let (sumDy, sumDyXhat, idx) = (moments, moments + C, argmax)
    // Samples outer, channels inner: the planes are read in memory order (a channel's planes
    // are C·P apart), and each channel's sums still add its samples in order 0 ..< N.
    Parallel.ranges(C, costPerItem: N * S) { cLo, cHi in
      for c in cLo..<cHi {
        sumDy[c] = 0
        sumDyXhat[c] = 0
      }
      for n in 0..<N {
        for c in cLo..<cHi {
          let plane = n * C + c
          px_sum_dot_relu_pool2(
            dy.data + plane * P, idx + plane * P, x.data + plane * S, h, w, self.mean[c],
            self.rstd[c], gamma[c], beta[c], sumDy + c, sumDyXhat + c)
        }
      }
      for c in cLo..<cHi {
        dBeta[c] += Float(sumDy[c])
        dGamma[c] += Float(sumDyXhat[c])
      }
    }
    if let coll = syncing { try coll.allReduceSum(moments, count: 2 * C) }
    let invM = 1 / lastCount
    Parallel.ranges(N * C, costPerItem: S) { lo, hi in
      for plane in lo..<hi {
        let c = plane % C
        px_bn_relu_pool2_backward(
          dx.data + plane * S, dy.data + plane * P, idx + plane * P, x.data + plane * S, h, w,
          self.mean[c], self.rstd[c], gamma[c] * self.rstd[c], Float(sumDy[c] * invM),
          Float(sumDyXhat[c] * invM), gamma[c], beta[c])
      }
    }
    return dx
  }

  /// Makes the layer also apply the 2×2 max pooling that follows its ReLU (`fusedPool`);
  /// needs `fusedReLU`. Returns `true`.
  @discardableResult
  public func fusePool() -> Bool {
    precondition(fusedReLU, "\(name): fusePool needs the fused ReLU")
    fusedPool = MaxPool2d(kernel: 2, stride: 2)
    return true
  }

  /// Makes the layer apply the ReLU that follows it (`fusedReLU`); returns `true`.
  /// Encoders call it when a ReLU follows the norm and then skip that ReLU.
  @discardableResult
  public func fuseReLU() -> Bool {
    fusedReLU = true
    return true
  }

  @inline(__always) private func activate(_ v: Float) -> Float { fusedReLU ? max(v, 0) : v }

  /// The portable twin of the fast kernels' ReLU mask: `dy` where `γ·x̂ + β > 0`.
  @inline(__always) private func masked(_ dy: Float, _ h: Float, _ g: Float, _ b: Float) -> Float {
    !fusedReLU || g * h + b > 0 ? dy : 0
  }

  /// - Parameters:
  ///   - dy: [N, C, H, W], the shape of the last forward's output.
  /// - Returns: dx [N, C, H, W], owned by the layer. Accumulates `dweight += Σ dy·x̂`,
  ///   `dbias += Σ dy` over this rank's values.
  ///
  /// Training: `dx = γ·rstd·(dy − Σdy/M − x̂·Σ(dy·x̂)/M)` with global sums and global M.
  /// Evaluation (frozen statistics): `dx = γ·rstd·dy`.
  public func backward(_ dy: Tensor) throws -> Tensor {
    if let x = fusedInput { return try poolBackward(dy, x) }
    if let pool = fusedPool { return try backwardNormalized(try pool.backward(dy)) }
    return try backwardNormalized(dy)
  }

  /// The plain layer's backward (dy of the BN output).
  private func backwardNormalized(_ dy: Tensor) throws -> Tensor {
    let s = lastShape
    guard dy.shape == s else {
      throw LayerShapeError(
        layer: name, reason: "backward got dy \(dy.shape), forward produced \(s)")
    }
    let C = channels
    let S = s.spatial
    let N = s.n
    let dx = dInput.tensor(s)
    let xh = xhat.data
    let gamma = arena.params + weightOffset
    let beta = arena.params + biasOffset
    let dGamma = arena.grads + weightOffset
    let dBeta = arena.grads + biasOffset
    let sumDy = moments
    let sumDyXhat = moments + C
    let fast = usesFastKernels && S >= 16
    Parallel.ranges(C, costPerItem: N * S) { cLo, cHi in
      for c in cLo..<cHi {
        var a = 0.0
        var b = 0.0
        let (gc, bc) = (gamma[c], beta[c])
        for n in 0..<N where fast {
          let base = (n * C + c) * S
          if fusedReLU {
            px_sum_dot_relu(dy.data + base, xh + base, S, gc, bc, &a, &b)
          } else {
            px_sum_dot(dy.data + base, xh + base, S, &a, &b)
          }
        }
        for n in 0..<N where !fast {
          let base = (n * C + c) * S
          for i in 0..<S {
            let g = Double(masked(dy.data[base + i], xh[base + i], gc, bc))
            a += g
            b += g * Double(xh[base + i])
          }
        }
        sumDy[c] = a
        sumDyXhat[c] = b
        dBeta[c] += Float(a)
        dGamma[c] += Float(b)
      }
    }
    if lastTraining {
      if let coll = syncing { try coll.allReduceSum(moments, count: 2 * C) }
      let invM = 1 / lastCount
      Parallel.ranges(N, costPerItem: C * S) { nLo, nHi in
        for n in nLo..<nHi {
          for c in 0..<C {
            let base = (n * C + c) * S
            let k = gamma[c] * rstd[c]
            let meanDy = Float(sumDy[c] * invM)
            let meanDyXhat = Float(sumDyXhat[c] * invM)
            if fast {
              if fusedReLU {
                px_bn_relu_backward(
                  dx.data + base, dy.data + base, xh + base, S, k, meanDy, meanDyXhat, gamma[c],
                  beta[c])
              } else {
                px_bn_backward(dx.data + base, dy.data + base, xh + base, S, k, meanDy, meanDyXhat)
              }
              continue
            }
            let (gc, bc) = (gamma[c], beta[c])
            for i in 0..<S {
              let d = masked(dy.data[base + i], xh[base + i], gc, bc)
              dx.data[base + i] = k * (d - meanDy - xh[base + i] * meanDyXhat)
            }
          }
        }
      }
    } else {
      for n in 0..<N {
        for c in 0..<C {
          let base = (n * C + c) * S
          let k = gamma[c] * rstd[c]
          let (gc, bc) = (gamma[c], beta[c])
          for i in 0..<S { dx.data[base + i] = k * masked(dy.data[base + i], xh[base + i], gc, bc) }
        }
      }
    }
    return dx
  }
}
