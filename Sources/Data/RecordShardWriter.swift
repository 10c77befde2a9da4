import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Writes a record shard (format in `RecordShardHeader`) atomically: records go to a temporary
/// file beside the target, which `finish()` fsyncs and renames into place, then fsyncs the
/// directory. A writer dropped without `finish()` deletes its temporary file, so a crash never
/// leaves a half-written shard under the final name.
///
/// ```swift
/// let writer = try RecordShardWriter(path: "train.pxrs", channels: 1, height: 28, width: 28)
/// try writer.append(labels: [3], payload: pixels)
/// try writer.finish()
/// ```
public final class RecordShardWriter {
  /// The final path of the shard.
  public let path: String
  /// Shape of every record: channels, height, width, labels per record.
  public let channels: Int, height: Int, width: Int, labelCount: Int
  /// Records appended so far.
  public private(set) var recordCount = 0

  private let tempPath: String
  private let fd: FileDescriptor
  /// Pending record bytes, flushed with one `write` when full.
  private var buffer: [UInt8] = []
  private var labelTable: [UInt8] = []
  private let bufferLimit = 1 << 20
  private var finished = false

  /// Bytes in one record's payload (`C·H·W`).
  public var payloadSize: Int { channels * height * width }

  /// Creates the temporary file and reserves the header.
  /// - Throws: `DataError` naming the file if it cannot be created, or for a bad shape.
  public init(path: String, channels: Int, height: Int, width: Int, labelCount: Int = 1) throws {
    guard channels > 0, height > 0, width > 0, labelCount >= 0 else {
      throw DataError.invalidArgument(
        "\(path): bad record shape \(channels)×\(height)×\(width) with \(labelCount) labels")
    }
    self.path = path
    self.channels = channels
    self.height = height
    self.width = width
    self.labelCount = labelCount
    self.tempPath = "\(path).tmp.\(getpid())"
    fd = try FileDescriptor.create(tempPath)
    buffer.reserveCapacity(bufferLimit + labelCount + channels * height * width)
    // Placeholder header; the real one (with the count) is written by finish().
    buffer.append(contentsOf: [UInt8](repeating: 0, count: RecordShardHeader.size))
  }

  deinit {
    if !finished {
      try? fd.close()
      unlink(tempPath)
    }
  }

  /// Appends one record.
  /// - Parameters:
  ///   - labels: exactly `labelCount` label bytes.
  ///   - payload: `C·H·W` bytes.
  public func append(labels: [UInt8], payload: UnsafePointer<UInt8>) throws {
    guard !finished else { throw DataError.invalidArgument("\(path): append after finish()") }
    guard labels.count == labelCount else {
      throw DataError.invalidArgument(
        "\(path): record \(recordCount) has \(labels.count) labels, shard expects \(labelCount)")
    }
    buffer.append(contentsOf: labels)
    buffer.append(contentsOf: UnsafeBufferPointer(start: payload, count: payloadSize))
    labelTable.append(contentsOf: labels)
    recordCount += 1
    if buffer.count >= bufferLimit { try flush() }
  }

  /// Appends one record from an array payload of `C·H·W` bytes.
  public func append(labels: [UInt8], payload: [UInt8]) throws {
    guard payload.count == payloadSize else {
      throw DataError.invalidArgument(
        "\(path): record \(recordCount) payload has \(payload.count) bytes, expected \(payloadSize)")
    }
    try payload.withUnsafeBufferPointer { try append(labels: labels, payload: $0.baseAddress!) }
  }

  /// Writes the label table and the header, fsyncs, renames into place and fsyncs the directory.
  public func finish() throws {
    guard !finished else { return }
    buffer.append(contentsOf: labelTable)
    try flush()
    let header = RecordShardHeader(
      recordCount: recordCount, channels: channels, height: height, width: width,
      labelCount: labelCount
    ).encoded()
    try header.withUnsafeBytes { try fd.writeFully($0, at: 0, path: tempPath) }
    try fd.sync(path: tempPath)
    finished = true  // the descriptor is closed below whatever happens
    do { try fd.close(path: tempPath) } catch {
      unlink(tempPath)
      throw error
    }
    do { try DataFiles.move(tempPath, to: path) } catch {
      unlink(tempPath)
      throw error
    }
    try DataFiles.syncDirectory(of: path)
  }

  private func flush() throws {
    if buffer.isEmpty { return }
    try buffer.withUnsafeBytes { try fd.writeFully($0, path: tempPath) }
    buffer.removeAll(keepingCapacity: true)
  }

  /// Packs every image of `source` into a shard at `path`, one label byte per record.
  /// - Throws: `DataError` if a label does not fit in a byte or the file cannot be written.
  public static func pack(_ source: ImageSource, to path: String) throws {
    let writer = try RecordShardWriter(
      path: path, channels: source.channels, height: source.height, width: source.width,
      labelCount: 1)
    let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: source.pixelsPerImage)
    defer { pixels.deallocate() }
    for i in 0..<source.count {
      let label = source.label(i)
      guard label >= 0 && label < 256 else {
        throw DataError.invalidArgument("\(path): label \(label) of sample \(i) does not fit in a byte")
      }
      try source.pixels(i, into: pixels)
      try writer.append(labels: [UInt8(label)], payload: pixels)
    }
    try writer.finish()
  }
}
