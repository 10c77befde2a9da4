/// A layer or loss was given a tensor whose shape does not fit its configuration; the
/// message names the layer and both shapes.
public struct LayerShapeError: Error, CustomStringConvertible {
  public var layer: String
  public var reason: String
  public init(layer: String, reason: String) {
    self.layer = layer
    self.reason = reason
  }
  public var description: String { "\(layer): \(reason)" }
}
