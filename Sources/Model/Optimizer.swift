/// An update rule over the flat parameter arena (DESIGN.md invariant 1): one loop over
/// `arena.parameterRanges`, reading `arena.params`/`arena.grads` at the same offsets.
///
/// State buffers have the arena's layout ([parameterCount]) so checkpoints save them next to
/// the parameters and name their slices with the parameters' names.
public protocol Optimizer: AnyObject {
  /// Applies one update with learning rate `lr` to `arena.params` from `arena.grads`
  /// (gradients are read, never modified).
  /// - Throws: `OptimizerError` when the arena does not have the size the state was made for.
  func step(_ arena: ParameterArena, lr: Float) throws
  /// The same update on `ranges` only (ranges of `arena`): every other range keeps its
  /// parameters and state bit for bit (layer-wise training freezes them).
  func step(_ arena: ParameterArena, lr: Float, ranges: [NamedRange]) throws
  /// Names of the state buffers, e.g. `["momentum"]`.
  var stateNames: [String] { get }
  /// The state buffer with that name, [parameterCount], arena layout; `nil` for an unknown
  /// name.
  func stateBuffer(named name: String) -> UnsafeMutablePointer<Float>?
}

/// An optimizer was used with an arena it was not made for.
public struct OptimizerError: Error, CustomStringConvertible {
  public var reason: String
  public init(reason: String) { self.reason = reason }
  public var description: String { "optimizer: \(reason)" }
}

extension Optimizer {
  public func step(_ arena: ParameterArena, lr: Float) throws {
    try step(arena, lr: lr, ranges: arena.parameterRanges)
  }
}
