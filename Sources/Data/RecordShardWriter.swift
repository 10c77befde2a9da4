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
  private var fd: Int32
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
    fd = open(tempPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    if fd < 0 { throw DataError.io(path: tempPath, operation: "create", reason: POSIXFile.lastError()) }
    buffer.reserveCapacity(bufferLimit + labelCount + channels * height * width)
    // Placeholder header; the real one (with the count) is written by finish().
    buffer.append(contentsOf: [UInt8](repeating: 0, count: RecordShardHeader.size))
  }

  deinit {
    if !finished {
      close(fd)
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
    try header.withUnsafeBytes { raw in
      var done = 0
      while done < raw.count {
        let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(done))
        if n < 0 {
          if errno == EINTR { continue }
          throw DataError.io(path: tempPath, operation: "pwrite", reason: POSIXFile.lastError())
        }
        done += n
      }
    }
    if fsync(fd) != 0 { throw DataError.io(path: tempPath, operation: "fsync", reason: POSIXFile.lastError()) }
    if close(fd) != 0 { throw DataError.io(path: tempPath, operation: "close", reason: POSIXFile.lastError()) }
    finished = true
    if rename(tempPath, path) != 0 {
      let reason = POSIXFile.lastError()
      unlink(tempPath)
      throw DataError.io(path: path, operation: "rename from \(tempPath)", reason: reason)
    }
    try POSIXFile.syncDirectory(of: path)
  }

  private func flush() throws {
    if buffer.isEmpty { return }
    try buffer.withUnsafeBytes { try POSIXFile.writeFully(fd, $0.baseAddress!, count: $0.count, path: tempPath) }
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
