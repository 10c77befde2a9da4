/// A backbone that maps a batch of inputs to one feature vector per sample,
/// `[N, featureDim, 1, 1]`, and also exposes the feature map just before its final pooling
/// (evaluation probes both; DESIGN.md "Data").
public protocol Encoder: Layer {
  /// Features per sample of the output (64 for `conv4`, 512 for `resnet18`).
  var featureDim: Int { get }
  /// Features per sample of the map before the final pooling, for the configured input size
  /// (576 = 64×3×3 for `conv4` on 28×28).
  var prePoolDim: Int { get }
  /// The last forward's map before the final pooling, `[N, C, H, W]`; nil before any forward.
  /// A view of a sublayer's output, valid until the next forward.
  var prePoolFeatures: Tensor? { get }
}

/// Builds a normalisation layer for `channels` channels whose parameters are named
/// `"\(name).weight"`, `"\(name).bias"`, … (BatchNorm, sync BatchNorm, or identity in tests).
public typealias NormFactory = (_ name: String, _ channels: Int) throws -> Layer
