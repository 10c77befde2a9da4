/// The clean inputs of an image set for evaluation (an `EvalSource`): each image as
/// `(x/255 − mean)/std`, un-augmented, with its class in the one label slot `class`.
/// Not thread-safe (it owns a pixel buffer); use one per thread.
public final class EvalBatchLoader: EvalSource {
  public let source: ImageSource
  /// Normalisation constants (Fashion-MNIST's by default).
  public let mean: Float, std: Float
  public let labelSlots: [LabelSlot]
  /// [C, H, W] bytes of the sample being normalised.
  private let pixels: UnsafeMutablePointer<UInt8>

  /// - Parameter classNames: the names of the classes (default: `"0"` … up to the largest label).
  public init(
    source: ImageSource, mean: Float = FashionMNIST.mean, std: Float = FashionMNIST.std, classNames: [String]? = nil
  ) {
    self.source = source
    self.mean = mean
    self.std = std
    let names = classNames ?? (0..<((0..<source.count).map { source.label($0) }.max() ?? -1) + 1).map { "\($0)" }
    labelSlots = [LabelSlot(name: "class", classNames: names)]
    pixels = .allocate(capacity: source.pixelsPerImage)
  }

  deinit { pixels.deallocate() }

  public var count: Int { source.count }
  public var inputShape: InputShape {
    InputShape(channels: source.channels, height: source.height, width: source.width)
  }
  public func label(_ i: Int, slot: Int) -> Int { source.label(i) }

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
}
