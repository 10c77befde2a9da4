/// Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header
/// `0x00 0x00 type ndims`, `ndims` big-endian UInt32 sizes, then the data in row-major order.
/// Only unsigned-byte data (type `0x08`) is supported — what the image and label files hold.
/// The file may be gzip-compressed.
public enum IDXFile {
  /// Reads an unsigned-byte IDX file (magic `0x00000801` for labels, `0x00000803` for images).
  /// - Parameters:
  ///   - path: the `.gz` or uncompressed IDX file.
  ///   - hint: appended to the error if the file is missing.
  /// - Returns: the dimensions (e.g. `[10000, 28, 28]`) and the data bytes, row-major.
  /// - Throws: `DataError` naming `path` for a missing file, a wrong magic number, or data
  ///   shorter (or longer) than the dimensions say.
  public static func read(path: String, hint: String? = nil) throws -> (dims: [Int], bytes: [UInt8]) {
    let raw = try Gzip.decompress(path: path, hint: hint)
    return try parse(raw, path: path)
  }

  /// Parses IDX bytes already in memory; `path` is used in error messages.
  static func parse(_ raw: [UInt8], path: String) throws -> (dims: [Int], bytes: [UInt8]) {
    guard raw.count >= 4 else {
      throw DataError.truncated(path: path, expectedBytes: 4, actualBytes: raw.count)
    }
    let magic = readBigEndian32(raw, at: 0)
    let ndims = Int(raw[3])
    guard raw[0] == 0, raw[1] == 0, raw[2] == 0x08, ndims >= 1 else {
      throw DataError.badMagic(
        path: path, found: hex(magic),
        expected: "an unsigned-byte IDX magic 0x000008NN (0x00000801 labels, 0x00000803 images)")
    }
    let headerBytes = 4 + 4 * ndims
    guard raw.count >= headerBytes else {
      throw DataError.truncated(path: path, expectedBytes: headerBytes, actualBytes: raw.count)
    }
    var dims: [Int] = []
    var total = 1
    for d in 0..<ndims {
      let size = Int(readBigEndian32(raw, at: 4 + 4 * d))
      dims.append(size)
      let (product, overflow) = total.multipliedReportingOverflow(by: size)
      if overflow { throw DataError.badHeader(path: path, reason: "dimensions \(dims) overflow") }
      total = product
    }
    let expected = headerBytes + total
    if raw.count < expected {
      throw DataError.truncated(path: path, expectedBytes: expected, actualBytes: raw.count)
    }
    if raw.count > expected {
      throw DataError.badHeader(
        path: path,
        reason: "\(raw.count - expected) bytes beyond the \(expected) that dimensions \(dims) need")
    }
    return (dims, Array(raw[headerBytes...]))
  }

  private static func readBigEndian32(_ b: [UInt8], at i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
  }

  private static func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
  }
}
