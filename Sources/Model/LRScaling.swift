/// How the base learning rate grows with the global batch B (SimCLR appendix B.1).
public enum LRScaling: String, Sendable, CaseIterable, Codable {
  /// base.
  case none
  /// base·B/256 (Goyal et al. 2017).
  case linear
  /// base·√B (SimCLR's choice for LARS with large batches, e.g. 0.075·√B).
  case sqrt

  public func scaled(_ base: Float, globalBatch: Int) -> Float {
    switch self {
    case .none: return base
    case .linear: return base * Float(globalBatch) / 256
    case .sqrt: return base * Float(globalBatch).squareRoot()
    }
  }
}
