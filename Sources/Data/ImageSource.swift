/// Something that serves fixed-size 8-bit images with integer labels by index: the in-memory
/// `ImageDataset` or a `ShardImageSource` reading a record shard by offset. Loaders and
/// evaluation code take an `ImageSource`, so they do not care where the pixels live.
///
/// `pixels(_:into:)` must be safe to call from several threads at once on different buffers
/// (both implementations are: one copies from immutable memory, the other uses `pread`).
public protocol ImageSource: AnyObject {
  /// Number of samples `N`.
  var count: Int { get }
  /// Channels `C` (1 for Fashion-MNIST).
  var channels: Int { get }
  /// Image height `H`.
  var height: Int { get }
  /// Image width `W`.
  var width: Int { get }
  /// The class label of sample `i` (its first label if the source holds several).
  func label(_ i: Int) -> Int
  /// Copies sample `i`'s `C·H·W` bytes, channel-major, into `into`.
  func pixels(_ i: Int, into: UnsafeMutablePointer<UInt8>) throws
  /// Copies the samples at `indices` into consecutive `C·H·W` slots of `into`: the batch read
  /// of a rank's part of a global batch, through `reader` where the source is a record shard
  /// (a collective reader requires every rank to call this the same number of times).
  func pixels(batch indices: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws
}

extension ImageSource {
  /// Bytes in one image (`C·H·W`).
  public var pixelsPerImage: Int { channels * height * width }

  /// All labels, in sample order.
  public func allLabels() -> [Int] { (0..<count).map { label($0) } }
}
