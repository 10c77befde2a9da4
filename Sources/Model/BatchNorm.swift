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
  private let moments: UnsafeMutablePointer<Double>
  /// [C] 1/√(σ² + ε) used by the last forward (batch or running variance).
  private let rstd: UnsafeMutablePointer<Float>
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
  }

  deinit {
    moments.deallocate()
    rstd.deallocate()
  }

  private var syncing: Collective? {
    guard let c = collective, c.size > 1 else { return nil }
    return c
  }

  /// - Parameters:
  ///   - x: [N, C, H, W] (C = `channels`).
  /// - Returns: y [N, C, H, W], owned by the layer.
  public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    let s = x.shape
    guard s.c == channels else {
      throw LayerShapeError(
        layer: name, reason: "input \(s) has \(s.c) channels, expected \(channels)")
    }
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
        let mean = sum[c] / M
        let variance = max(sumSq[c] / M - mean * mean, 0)
        rstd[c] = Float(1 / (variance + Double(eps)).squareRoot())
        rm[c] = Float((1 - m) * Double(rm[c]) + m * mean)
        rv[c] = Float((1 - m) * Double(rv[c]) + m * variance * M / (M - 1))
        // Reuse sum[c] as the mean for the normalisation pass below.
        sum[c] = mean
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
