import Synchronization
import SystemPackage

/// A record shard opened for reading (format in `RecordShardHeader`). Opening reads the header
/// and the label table only; `read(index:into:)` fetches one record with `pread`, so a rank
/// reads just the samples of its part of the batch and memory does not grow with the shard.
/// `pread` does not move a shared file offset, so reads from several threads are safe.
public final class RecordShard {
  /// The shard's path.
  public let path: String
  /// The validated header.
  public let header: RecordShardHeader
  /// [N, K] label bytes, from the label table.
  public let labelTable: [UInt8]
  private let fd: FileDescriptor
  private let readCounter = Atomic<Int>(0)

  /// Record bytes read so far by `read` and `readPayload` (all threads): what a test counts
  /// to show that a rank reads only its part.
  public var bytesRead: Int { readCounter.load(ordering: .relaxed) }

  /// Number of records `N`.
  public var count: Int { header.recordCount }
  /// Bytes per record (`K` labels + `C·H·W` payload).
  public var recordSize: Int { header.recordSize }
  /// Labels per record `K`.
  public var labelCount: Int { header.labelCount }

  /// Opens and validates a shard.
  /// - Throws: `DataError` naming `path` if it is missing, has a bad header, or its size is not
  ///   the header's `64 + N·recordSize + N·K` (a truncated copy, say).
  public init(path: String) throws {
    self.path = path
    let fd = try FileDescriptor.openForReading(path)
    do {
      let size = try fd.size(path: path)
      guard size >= RecordShardHeader.size else {
        throw DataError.truncated(path: path, expectedBytes: RecordShardHeader.size, actualBytes: size)
      }
      var headerBytes = [UInt8](repeating: 0, count: RecordShardHeader.size)
      try headerBytes.withUnsafeMutableBytes { try fd.readFully(at: 0, into: $0, path: path) }
      let header = try RecordShardHeader.decode(headerBytes, path: path)
      if size < header.fileSize {
        throw DataError.truncated(path: path, expectedBytes: header.fileSize, actualBytes: size)
      }
      if size > header.fileSize {
        throw DataError.badHeader(
          path: path,
          reason: "file has \(size) bytes, header implies \(header.fileSize) (\(header.recordCount) records of \(header.recordSize) bytes)")
      }
      var labels = [UInt8](repeating: 0, count: header.recordCount * header.labelCount)
      if !labels.isEmpty {
        try labels.withUnsafeMutableBytes {
          try fd.readFully(at: header.labelTableOffset, into: $0, path: path)
        }
      }
      self.header = header
      self.labelTable = labels
      self.fd = fd
    } catch {
      try? fd.close()
      throw error
    }
  }

  deinit { try? fd.close() }

  /// Byte offset of record `index`.
  @inline(__always) func offset(_ index: Int) -> Int { RecordShardHeader.size + index * recordSize }

  /// Reads record `index` (`K` label bytes then the payload, `recordSize` bytes) into `into`.
  public func read(index: Int, into: UnsafeMutablePointer<UInt8>) throws {
    try check(index)
    try fd.readFully(
      at: offset(index), into: UnsafeMutableRawBufferPointer(start: into, count: recordSize), path: path)
    readCounter.add(recordSize, ordering: .relaxed)
  }

  /// Reads only the payload of record `index` (`C·H·W` bytes) into `into`.
  public func readPayload(index: Int, into: UnsafeMutablePointer<UInt8>) throws {
    try check(index)
    try fd.readFully(
      at: offset(index) + labelCount,
      into: UnsafeMutableRawBufferPointer(start: into, count: header.payloadSize), path: path)
    readCounter.add(header.payloadSize, ordering: .relaxed)
  }

  /// Label `slot` (0..<K) of record `index`, from the label table already in memory.
  public func label(_ index: Int, slot: Int = 0) -> Int {
    Int(labelTable[index * labelCount + slot])
  }

  private func check(_ index: Int) throws {
    guard index >= 0 && index < count else {
      throw DataError.indexOutOfRange(what: "\(path): record", index: index, count: count)
    }
  }
}
