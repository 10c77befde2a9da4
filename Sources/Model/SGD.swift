/// SGD with momentum and weight decay, PyTorch's rule (`torch.optim.SGD`, no dampening,
/// no Nesterov):
///
///     g ← g + wd·w;   v ← m·v + g;   w ← w − lr·v
///
/// It is `LARS` with trust 1 (η = 0), decay on every range (PyTorch decays biases and BN
/// parameters too unless told otherwise) and the learning rate outside the velocity.
public final class SGD: LARS {
  /// - Parameters:
  ///   - parameterCount: `arena.parameterCount`.
  ///   - momentum: m.
  ///   - weightDecay: wd.
  ///   - decaysBiasOrNorm: `false` excludes `.biasOrNorm` ranges from decay.
  public init(
    parameterCount: Int, momentum: Float = 0.9, weightDecay: Float = 0,
    decaysBiasOrNorm: Bool = true
  ) {
    super.init(
      parameterCount: parameterCount, momentum: momentum, weightDecay: weightDecay,
      trustCoefficient: 0, excludesBiasOrNorm: !decaysBiasOrNorm, learningRateInVelocity: false)
  }
}
