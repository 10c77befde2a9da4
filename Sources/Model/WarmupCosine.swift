import Foundation

/// Linear warm-up then cosine decay to 0 (SimCLR; Goyal et al. 2017 for the warm-up), with
/// `t` the step from 0, `W` warm-up steps, `T` total steps:
///
///     t < W:  base·(t + 1)/W
///     t ≥ W:  base·½·(1 + cos(π·(t − W)/(T − W)))
///
/// Steps past `T` stay at 0; computed in Double.
public struct WarmupCosine: LRSchedule, Sendable, Equatable {
  public var baseLR: Float
  public var warmupSteps: Int
  public var totalSteps: Int

  public init(baseLR: Float, warmupSteps: Int, totalSteps: Int) {
    self.baseLR = baseLR
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
  }

  public func lr(at step: Int) -> Float {
    let base = Double(baseLR)
    if step < warmupSteps { return Float(base * Double(step + 1) / Double(warmupSteps)) }
    let span = totalSteps - warmupSteps
    guard span > 0 else { return 0 }
    let progress = min(Double(step - warmupSteps) / Double(span), 1)
    return Float(base * 0.5 * (1 + cos(Double.pi * progress)))
  }
}
