/// Fills batches of normalised, un-augmented images for evaluation and feature extraction.
/// Not thread-safe (it owns a pixel buffer); use one per thread.
public final class EvalBatchLoader {
  public let source: ImageSource
  /// Normalisation constants (Fashion-MNIST's by default).
  public let mean: Float, std: Float
  /// [C, H, W] bytes of the sample being normalised.
  private let pixels: UnsafeMutablePointer<UInt8>

  public init(source: ImageSource, mean: Float = FashionMNIST.mean, std: Float = FashionMNIST.std) {
    self.source = source
    self.mean = mean
    self.std = std
    pixels = .allocate(capacity: source.pixelsPerImage)
  }

  deinit { pixels.deallocate() }

  /// Writes the samples at `indices` into `x`, shaped [indices.count, C, H, W], as
  /// `(x/255 − mean)/std`.
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws
  where S.Element == Int {
    let n = source.pixelsPerImage
    for (row, sample) in indices.enumerated() {
      try source.pixels(sample, into: pixels)
      SimCLRAugment.normalize(pixels, count: n, into: x + row * n, mean: mean, std: std)
    }
  }

  /// The labels of the samples at `indices`.
  public func labels<S: Sequence>(indices: S) -> [Int] where S.Element == Int {
    indices.map { source.label($0) }
  }
}
