/// Images held in memory: `N` images of `C×H×W` unsigned bytes and one class label each.
/// Immutable after construction, so it can be shared between threads.
public final class ImageDataset: ImageSource {
  /// Number of images `N`.
  public let count: Int
  /// Channels `C`.
  public let channels: Int
  /// Height `H`.
  public let height: Int
  /// Width `W`.
  public let width: Int
  /// [N] class labels.
  public let labels: [Int32]
  /// [N, C, H, W] pixel bytes, row-major.
  public let pixelBytes: [UInt8]

  /// Creates a dataset, checking that the buffers match the shape.
  /// - Throws: `DataError.invalidArgument` if `pixels` or `labels` has the wrong length.
  public init(
    count: Int, channels: Int = 1, height: Int, width: Int, pixels: [UInt8], labels: [Int32]
  ) throws {
    guard count >= 0, channels > 0, height > 0, width > 0 else {
      throw DataError.invalidArgument(
        "ImageDataset: bad shape count \(count), C×H×W \(channels)×\(height)×\(width)")
    }
    guard pixels.count == count * channels * height * width else {
      throw DataError.invalidArgument(
        "ImageDataset: \(pixels.count) pixel bytes for \(count) images of \(channels)×\(height)×\(width)")
    }
    guard labels.count == count else {
      throw DataError.invalidArgument("ImageDataset: \(labels.count) labels for \(count) images")
    }
    self.count = count
    self.channels = channels
    self.height = height
    self.width = width
    self.pixelBytes = pixels
    self.labels = labels
  }

  /// The class label of image `i`.
  public func label(_ i: Int) -> Int { Int(labels[i]) }

  /// Copies image `i` into `into` (`C·H·W` bytes).
  public func pixels(_ i: Int, into: UnsafeMutablePointer<UInt8>) throws {
    guard i >= 0 && i < count else {
      throw DataError.indexOutOfRange(what: "ImageDataset sample", index: i, count: count)
    }
    let n = pixelsPerImage
    pixelBytes.withUnsafeBufferPointer { buf in
      into.update(from: buf.baseAddress! + i * n, count: n)
    }
  }

  /// The bytes of image `i`, without copying.
  public func image(_ i: Int) -> ArraySlice<UInt8> {
    let n = pixelsPerImage
    return pixelBytes[i * n..<(i + 1) * n]
  }

  /// A new dataset holding the images at `indices`, in that order.
  public func subset<S: Sequence>(_ indices: S) throws -> ImageDataset where S.Element == Int {
    let n = pixelsPerImage
    var px: [UInt8] = []
    var lb: [Int32] = []
    for i in indices {
      guard i >= 0 && i < count else {
        throw DataError.indexOutOfRange(what: "ImageDataset sample", index: i, count: count)
      }
      px.append(contentsOf: pixelBytes[i * n..<(i + 1) * n])
      lb.append(labels[i])
    }
    return try ImageDataset(
      count: lb.count, channels: channels, height: height, width: width, pixels: px, labels: lb)
  }
}
