/// The 64-byte header of a record shard, little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0  | 4 | magic `"PXRS"` |
/// | 4  | 4 | version (1) |
/// | 8  | 8 | record count `N` |
/// | 16 | 8 | record size in bytes (`labelCount + C·H·W`) |
/// | 24 | 4 | channels `C` |
/// | 28 | 4 | height `H` |
/// | 32 | 4 | width `W` |
/// | 36 | 4 | labels per record `K` (one byte each) |
/// | 40 | 4 | element type (1 = UInt8) |
/// | 44 | 20 | zero |
///
/// After the header come `N` fixed-size records (`K` label bytes, then the `C·H·W` payload
/// bytes), then a label table of `N·K` bytes that repeats the records' labels so a reader gets
/// all labels with one read instead of touching every record.
public struct RecordShardHeader: Equatable, Sendable {
  public static let magic: [UInt8] = Array("PXRS".utf8)
  public static let currentVersion: UInt32 = 1
  public static let size = 64
  /// Element type code for unsigned-byte payloads, the only one defined so far.
  public static let elementUInt8: UInt32 = 1

  public var version: UInt32 = RecordShardHeader.currentVersion
  public var recordCount: Int
  public var channels: Int
  public var height: Int
  public var width: Int
  public var labelCount: Int
  public var elementType: UInt32 = RecordShardHeader.elementUInt8

  /// Payload bytes per record (`C·H·W`).
  public var payloadSize: Int { channels * height * width }
  /// Bytes per record (`K + C·H·W`).
  public var recordSize: Int { labelCount + payloadSize }
  /// Byte offset of the label table.
  public var labelTableOffset: Int { Self.size + recordCount * recordSize }
  /// The file size the header implies.
  public var fileSize: Int { labelTableOffset + recordCount * labelCount }

  public init(recordCount: Int, channels: Int, height: Int, width: Int, labelCount: Int) {
    self.recordCount = recordCount
    self.channels = channels
    self.height = height
    self.width = width
    self.labelCount = labelCount
  }

  /// The 64 header bytes.
  func encoded() -> [UInt8] {
    var b = [UInt8](repeating: 0, count: Self.size)
    func put(_ v: UInt64, _ at: Int, _ n: Int) {
      for k in 0..<n { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }
    b.replaceSubrange(0..<4, with: Self.magic)
    put(UInt64(version), 4, 4)
    put(UInt64(recordCount), 8, 8)
    put(UInt64(recordSize), 16, 8)
    put(UInt64(channels), 24, 4)
    put(UInt64(height), 28, 4)
    put(UInt64(width), 32, 4)
    put(UInt64(labelCount), 36, 4)
    put(UInt64(elementType), 40, 4)
    return b
  }

  /// Decodes and validates a header; `path` names the file in errors.
  static func decode(_ b: [UInt8], path: String) throws -> RecordShardHeader {
    func get(_ at: Int, _ n: Int) -> UInt64 {
      var v: UInt64 = 0
      for k in 0..<n { v |= UInt64(b[at + k]) << (8 * UInt64(k)) }
      return v
    }
    guard Array(b[0..<4]) == magic else {
      let found = b[0..<4].map { $0 >= 32 && $0 < 127 ? String(UnicodeScalar($0)) : "\\x\($0)" }
      throw DataError.badMagic(path: path, found: "\"\(found.joined())\"", expected: "\"PXRS\" (Parallax record shard)")
    }
    let version = UInt32(get(4, 4))
    guard version == currentVersion else {
      throw DataError.badHeader(path: path, reason: "version \(version), this reader knows \(currentVersion)")
    }
    let count = get(8, 8)
    let recordSize = get(16, 8)
    let c = get(24, 4), h = get(28, 4), w = get(32, 4), k = get(36, 4)
    let element = UInt32(get(40, 4))
    guard element == elementUInt8 else {
      throw DataError.badHeader(path: path, reason: "element type \(element) is not 1 (UInt8)")
    }
    let limit: UInt64 = 1 << 20  // keeps C·H·W + K well inside 64 bits
    guard c > 0, h > 0, w > 0, c < limit, h < limit, w < limit, k < limit,
      count < UInt64(Int.max >> 8)
    else {
      throw DataError.badHeader(path: path, reason: "shape \(c)×\(h)×\(w), count \(count)")
    }
    guard recordSize == k + c * h * w else {
      throw DataError.badHeader(
        path: path, reason: "record size \(recordSize) ≠ \(k) label bytes + \(c)×\(h)×\(w) payload")
    }
    var header = RecordShardHeader(
      recordCount: Int(count), channels: Int(c), height: Int(h), width: Int(w), labelCount: Int(k))
    header.version = version
    header.elementType = element
    let (body, overflow) = Int(count).multipliedReportingOverflow(by: Int(recordSize) + Int(k))
    if overflow || body > Int.max - size { throw DataError.badHeader(path: path, reason: "record count \(count) too large") }
    return header
  }
}
