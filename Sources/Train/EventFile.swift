import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A TensorBoard event file, `events.out.tfevents.<unix seconds>.<host>`, as TensorFlow's
/// `tf.summary` writes it: a TFRecord file (each record `uint64 length`, masked CRC-32C of
/// the length, the bytes, masked CRC-32C of the bytes; little-endian) of `Event` protobufs.
/// The first record names the format (`file_version: "brain.Event:2"`); every later one holds
/// a `Summary` of scalar values (`simple_value`) at one step.
///
/// The protobuf messages are encoded here by hand; only these fields are written:
/// `Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5 }`,
/// `Summary { repeated Value value = 1 }`, `Value { string tag = 1; float simple_value = 2 }`.
/// Records go straight to the file descriptor (no buffering), so TensorBoard sees each step
/// as soon as it is written, and a killed run leaves at most one partial record at the end,
/// which readers skip.
public final class EventFile {
  public let path: String
  private let file: AppendFile

  /// The format name TensorBoard expects in the first record.
  public static let fileVersion = "brain.Event:2"

  /// Creates a new event file in `directory` (which must exist) and writes its version
  /// record. A file of the same name (two runs started in the same second) gets `.<pid>`.
  /// - Throws: `AtomicFile.IOError` naming the file.
  public init(directory: String, wallTime: Double = Date().timeIntervalSince1970) throws {
    var name = "events.out.tfevents.\(Int(wallTime)).\(EventFile.hostName())"
    if FileManager.default.fileExists(atPath: directory + "/" + name) { name += ".\(getpid())" }
    path = (directory as NSString).appendingPathComponent(name)
    file = try AppendFile(path: path)
    var event = ProtoWriter()
    event.double(1, wallTime)
    event.string(3, Self.fileVersion)
    try file.write(bytes: Self.record(event.bytes))
  }

  /// Opens an event file this process wrote, to append more steps (the probes after the run).
  public init(appendingTo path: String) throws {
    self.path = path
    file = try AppendFile(path: path)
  }

  /// Appends one `Event` with a scalar `Summary.Value` per pair, at `step`.
  public func write(
    scalars: [(tag: String, value: Float)], step: Int, wallTime: Double = Date().timeIntervalSince1970
  ) throws {
    guard !scalars.isEmpty else { return }
    try file.write(bytes: Self.record(Self.event(scalars: scalars, step: step, wallTime: wallTime)))
  }

  /// The `Event` protobuf of scalars at one step.
  static func event(scalars: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
    var summary = ProtoWriter()
    for (tag, value) in scalars {
      var v = ProtoWriter()
      v.string(1, tag)
      v.float(2, value)
      summary.message(1, v)
    }
    var event = ProtoWriter()
    event.double(1, wallTime)
    event.int64(2, Int64(step))
    event.message(5, summary)
    return event.bytes
  }

  /// TFRecord framing of one record.
  static func record(_ payload: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(payload.count + 16)
    let length = littleEndian(UInt64(payload.count))
    out += length
    out += littleEndian(CRC32C.masked(CRC32C.checksum(length)))
    out += payload
    out += littleEndian(CRC32C.masked(CRC32C.checksum(payload)))
    return out
  }

  static func littleEndian<T: FixedWidthInteger>(_ x: T) -> [UInt8] {
    withUnsafeBytes(of: x.littleEndian) { Array($0) }
  }

  static func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // The name becomes part of a file name.
    let safe = name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" }
    return safe.isEmpty ? "localhost" : String(safe)
  }
}

/// Protocol-buffer wire format, for the few message shapes `EventFile` writes: varint keys
/// `field << 3 | wire type` (0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit).
struct ProtoWriter {
  var bytes: [UInt8] = []

  mutating func varint(_ value: UInt64) {
    var v = value
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }

  mutating func key(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }

  mutating func double(_ field: Int, _ value: Double) {
    key(field, 1)
    bytes += EventFile.littleEndian(value.bitPattern)
  }

  mutating func float(_ field: Int, _ value: Float) {
    key(field, 5)
    bytes += EventFile.littleEndian(value.bitPattern)
  }

  /// An `int64` (negative values take ten bytes, as protobuf's two's-complement varint).
  mutating func int64(_ field: Int, _ value: Int64) {
    key(field, 0)
    varint(UInt64(bitPattern: value))
  }

  mutating func string(_ field: Int, _ value: String) { lengthDelimited(field, Array(value.utf8)) }

  mutating func message(_ field: Int, _ value: ProtoWriter) { lengthDelimited(field, value.bytes) }

  mutating func lengthDelimited(_ field: Int, _ value: [UInt8]) {
    key(field, 2)
    varint(UInt64(value.count))
    bytes += value
  }
}
