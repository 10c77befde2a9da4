/// LARS (You, Gitman & Ginsburg 2017, as used by SimCLR): SGD with momentum whose step for
/// each parameter tensor is scaled by a trust ratio.
///
/// For a weight range (kind `.weight`), with weight decay `wd`, momentum `m` and trust
/// coefficient `η`:
///
///     g ← g + wd·w
///     trust = η·‖w‖/‖g‖          (1 if either norm is 0)
///     v ← m·v + lr·trust·g
///     w ← w − v
///
/// Ranges of kind `.biasOrNorm` (biases, BN affine) are excluded: no decay and trust 1.
/// Norms are accumulated in Double.
///
/// `SGD` is this class with adaptation off (η = 0, trust 1 everywhere), decay on every range,
/// and PyTorch's placement of the learning rate (`v ← m·v + g; w ← w − lr·v`), so its
/// momentum buffer is PyTorch's `momentum_buffer` (tinygrad: "SGD is LARS with trust 0").
public class LARS: Optimizer {
  public let momentum: Float
  public let weightDecay: Float
  /// η, the trust coefficient; 0 turns adaptation off (trust 1).
  public let trustCoefficient: Float
  /// Whether `.biasOrNorm` ranges skip decay and adaptation.
  public let excludesBiasOrNorm: Bool
  /// `true`: `v ← m·v + lr·trust·g; w ← w − v` (LARS). `false`: `v ← m·v + trust·g;
  /// w ← w − lr·v` (PyTorch SGD). The two agree while lr is constant.
  public let learningRateInVelocity: Bool
  public let parameterCount: Int
  /// [parameterCount] velocity v, arena layout; zero at start. Saved in checkpoints.
  public let momentumBuffer: UnsafeMutablePointer<Float>

  /// - Parameters:
  ///   - parameterCount: `arena.parameterCount` of the arena this optimizer will step.
  ///   - momentum: m.
  ///   - weightDecay: wd, applied to `.weight` ranges only.
  ///   - trustCoefficient: η.
  public convenience init(
    parameterCount: Int, momentum: Float = 0.9, weightDecay: Float, trustCoefficient: Float = 0.001
  ) {
    self.init(
      parameterCount: parameterCount, momentum: momentum, weightDecay: weightDecay,
      trustCoefficient: trustCoefficient, excludesBiasOrNorm: true, learningRateInVelocity: true)
  }

  /// The general rule; `LARS` and `SGD` are two settings of it.
  public init(
    parameterCount: Int, momentum: Float, weightDecay: Float, trustCoefficient: Float,
    excludesBiasOrNorm: Bool, learningRateInVelocity: Bool
  ) {
    self.parameterCount = parameterCount
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.trustCoefficient = trustCoefficient
    self.excludesBiasOrNorm = excludesBiasOrNorm
    self.learningRateInVelocity = learningRateInVelocity
    momentumBuffer = .allocate(capacity: max(parameterCount, 1))
    momentumBuffer.initialize(repeating: 0, count: max(parameterCount, 1))
  }

  deinit { momentumBuffer.deallocate() }

  public var stateNames: [String] { ["momentum"] }

  public func stateBuffer(named name: String) -> UnsafeMutablePointer<Float>? {
    name == "momentum" ? momentumBuffer : nil
  }

  public func step(_ arena: ParameterArena, lr: Float) throws {
    try step(arena, lr: lr, ranges: arena.parameterRanges)
  }

  /// Updates only `ranges` (ranges of `arena`): the others keep their parameters and state
  /// bit for bit (layer-wise training freezes them).
  public func step(_ arena: ParameterArena, lr: Float, ranges: [NamedRange]) throws {
    guard arena.isAllocated, arena.parameterCount == parameterCount else {
      throw OptimizerError(
        reason: "state is for \(parameterCount) parameters, arena has \(arena.parameterCount)"
          + (arena.isAllocated ? "" : " (not allocated)"))
    }
    let m = momentum
    for r in ranges {
      let w = arena.params + r.offset
      let g = arena.grads + r.offset
      let v = momentumBuffer + r.offset
      let excluded = excludesBiasOrNorm && r.kind == .biasOrNorm
      let wd: Float = excluded ? 0 : weightDecay
      var trust: Float = 1
      if trustCoefficient != 0 && !excluded {
        var ww = 0.0
        var gg = 0.0
        for i in 0..<r.count {
          let d = Double(g[i] + wd * w[i])
          ww += Double(w[i]) * Double(w[i])
          gg += d * d
        }
        if ww > 0 && gg > 0 { trust = Float(Double(trustCoefficient) * (ww / gg).squareRoot()) }
      }
      if learningRateInVelocity {
        let k = lr * trust
        for i in 0..<r.count {
          v[i] = m * v[i] + k * (g[i] + wd * w[i])
          w[i] -= v[i]
        }
      } else {
        for i in 0..<r.count {
          v[i] = m * v[i] + trust * (g[i] + wd * w[i])
          w[i] -= lr * v[i]
        }
      }
    }
  }
}
