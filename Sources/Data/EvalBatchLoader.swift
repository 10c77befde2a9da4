/// The clean inputs of an image set for evaluation (an `EvalSource`): each image as
/// `(x/255 − mean)/std` per channel, un-augmented, with its labels (by default the source's
/// one label, slot `class`).
/// Not thread-safe (it owns a pixel buffer); use one per thread.
public final class EvalBatchLoader: EvalSource {
  public let source: ImageSource
  /// Normalisation constants per channel (Fashion-MNIST's by default).
  public let mean: [Float], std: [Float]
  public let labelSlots: [LabelSlot]
  /// The packed set's images, when the source is one (its label slots).
  private let subset: ImageSubset?
  /// [C, H, W] bytes of the sample being normalised.
  private let pixels: UnsafeMutablePointer<UInt8>

  /// - Parameter classNames: the names of the classes (default: `"0"` … up to the largest label).
  public init(
    source: ImageSource, mean: Float = FashionMNIST.mean, std: Float = FashionMNIST.std, classNames: [String]? = nil
  ) {
    self.source = source
    self.mean = [Float](repeating: mean, count: source.channels)
    self.std = [Float](repeating: std, count: source.channels)
    let names = classNames ?? (0..<((0..<source.count).map { source.label($0) }.max() ?? -1) + 1).map { "\($0)" }
    labelSlots = [LabelSlot(name: "class", classNames: names)]
    subset = nil
    pixels = .allocate(capacity: source.pixelsPerImage)
  }

  /// The images of a packed set at `indices`, with the set's per-channel statistics and
  /// every label slot.
  public init(set: ImageSetSource, indices: [Int]) throws {
    let subset = try ImageSubset(set, indices: indices)
    source = subset
    self.subset = subset
    mean = set.info.mean
    std = set.info.std
    labelSlots = zip(set.info.labelNames, set.info.classNames).map { LabelSlot(name: $0, classNames: $1) }
    pixels = .allocate(capacity: set.pixelsPerImage)
  }

  deinit { pixels.deallocate() }

  public var count: Int { source.count }
  public var inputShape: InputShape {
    InputShape(channels: source.channels, height: source.height, width: source.width)
  }
  public func label(_ i: Int, slot: Int) -> Int { subset?.label(i, slot: slot) ?? source.label(i) }

  /// Writes the samples at `indices` into `x`, shaped [indices.count, C, H, W], as
  /// `(x/255 − mean)/std`.
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws
  where S.Element == Int {
    let n = source.pixelsPerImage
    let plane = source.height * source.width
    for (row, sample) in indices.enumerated() {
      try source.pixels(sample, into: pixels)
      for ch in 0..<source.channels {
        SimCLRAugment.normalize(
          pixels + ch * plane, count: plane, into: x + row * n + ch * plane, mean: mean[ch], std: std[ch])
      }
    }
  }
}

