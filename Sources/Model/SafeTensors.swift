import Foundation

/// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
/// header mapping names to `{dtype, shape, data_offsets}` (plus optional `__metadata__` of
/// strings), then the raw little-endian tensor bytes.
public enum SafeTensors {
  public struct Entry: Equatable {
    public var name: String
    public var shape: [Int]
    public var values: [Float]
    public init(name: String, shape: [Int], values: [Float]) {
      self.name = name
      self.shape = shape
      self.values = values
    }
  }

  public struct FormatError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
  }

  /// Serialises tensors (F32) and metadata into safetensors bytes; entries keep their order.
  public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) -> Data {
    var header = "{"
    var first = true
    if !metadata.isEmpty {
      let meta = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
      header += "\"__metadata__\":{\(meta.joined(separator: ","))}"
      first = false
    }
    var offset = 0
    for e in entries {
      precondition(e.shape.reduce(1, *) == e.values.count, "\(e.name): shape/value mismatch")
      let bytes = e.values.count * 4
      if !first { header += "," }
      first = false
      header += "\(jsonString(e.name)):{\"dtype\":\"F32\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
      offset += bytes
    }
    header += "}"
    // Pad the header with spaces so the data starts 8-byte aligned (allowed by the format).
    while (header.utf8.count + 8) % 8 != 0 { header += " " }
    var data = Data()
    var len = UInt64(header.utf8.count).littleEndian
    withUnsafeBytes(of: &len) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.reserveCapacity(data.count + offset)
    for e in entries {
      e.values.withUnsafeBufferPointer { p in
        p.withMemoryRebound(to: UInt8.self) { _ in }
        data.append(UnsafeBufferPointer(start: UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: UInt8.self), count: p.count * 4))
      }
    }
    return data
  }

  /// Parses safetensors bytes; `path` names the file in errors. F32, F64, I64, I32 and
  /// BF16/F16 tensors are converted to Float.
  public static func decode(_ data: Data, path: String) throws -> (
    entries: [String: Entry], metadata: [String: String]
  ) {
    func fail(_ r: String) -> FormatError { FormatError(path: path, reason: r) }
    guard data.count >= 8 else { throw fail("file is \(data.count) bytes, too short for a safetensors header") }
    let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self).littleEndian }
    guard n > 1, n <= UInt64(data.count - 8) else {
      throw fail("header length \(n) exceeds the file size \(data.count) (truncated or not safetensors)")
    }
    let headerData = data.subdata(in: 8..<(8 + Int(n)))
    guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
      throw fail("header is not a JSON object")
    }
    let body = data.subdata(in: (8 + Int(n))..<data.count)
    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in json {
      if name == "__metadata__" {
        guard let meta = value as? [String: Any] else { throw fail("__metadata__ is not an object of strings") }
        for (k, v) in meta { metadata[k] = "\(v)" }
        continue
      }
      guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
        let shapeNumbers = info["shape"] as? [NSNumber],
        let offsetNumbers = info["data_offsets"] as? [NSNumber], offsetNumbers.count == 2
      else { throw fail("tensor \(name) has a malformed header entry") }
      // Header integers come from outside: each must be an exact non-negative integer, and
      // their products are checked for overflow and against the data actually present.
      func integer(_ x: NSNumber, _ what: String) throws -> Int {
        let d = x.doubleValue
        guard d.isFinite, d >= 0, d < 0x1p62, d == d.rounded(), Double(x.int64Value) == d else {
          throw fail("tensor \(name) has \(what) \(x), not a non-negative integer below 2^62")
        }
        return Int(x.int64Value)
      }
      let shape = try shapeNumbers.map { try integer($0, "dimension") }
      let offs = try offsetNumbers.map { try integer($0, "data offset") }
      let width: Int
      switch dtype {
      case "F32", "I32": width = 4
      case "F64", "I64": width = 8
      case "BF16", "F16": width = 2
      default: throw fail("tensor \(name) has unsupported dtype \(dtype)")
      }
      var count = 1
      for d in shape {
        let (product, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow, product <= body.count else {
          throw fail("tensor \(name) shape \(shape) × \(dtype) needs more than the file's \(body.count) data bytes")
        }
        count = product
      }
      let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
      guard !overflow, offs[0] <= offs[1], offs[1] <= body.count, offs[1] - offs[0] == bytes else {
        throw fail("tensor \(name) data_offsets \(offs) do not fit shape \(shape) × \(dtype) in \(body.count) data bytes (truncated?)")
      }
      var values = [Float](repeating: 0, count: count)
      if count > 0 { body.withUnsafeBytes { raw in
        let base = raw.baseAddress! + offs[0]
        for i in 0..<count {
          let p = base + i * width
          switch dtype {
          case "F32": values[i] = Float(bitPattern: p.loadUnaligned(as: UInt32.self).littleEndian)
          case "F64": values[i] = Float(Double(bitPattern: p.loadUnaligned(as: UInt64.self).littleEndian))
          case "I64": values[i] = Float(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
          case "I32": values[i] = Float(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
          case "BF16":
            values[i] = Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self).littleEndian) << 16)
          default:  // F16
            values[i] = Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self).littleEndian))
          }
        }
      } }
      entries[name] = Entry(name: name, shape: shape, values: values)
    }
    return (entries, metadata)
  }

  /// Reads a safetensors file.
  public static func read(_ url: URL) throws -> (entries: [String: Entry], metadata: [String: String]) {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
      throw FormatError(path: url.path, reason: "cannot read: \(error.localizedDescription)")
    }
    return try decode(data, path: url.path)
  }

  private static func jsonString(_ s: String) -> String {
    var out = "\""
    for ch in s.unicodeScalars {
      switch ch {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default:
        if ch.value < 0x20 { out += String(format: "\\u%04x", ch.value) } else { out.unicodeScalars.append(ch) }
      }
    }
    return out + "\""
  }
}
