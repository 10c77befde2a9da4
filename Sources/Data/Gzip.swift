import CZlib

/// Reads gzip files with zlib. Files that do not start with the gzip magic bytes are returned
/// as they are, so callers can accept both `train-images-idx3-ubyte.gz` and an unpacked copy.
public enum Gzip {
  /// Reads and, if it is gzip-compressed, decompresses the file at `path`.
  ///
  /// Concatenated gzip members (as `cat a.gz b.gz` makes) are decompressed one after the other.
  /// - Parameters:
  ///   - path: the file to read.
  ///   - hint: appended to the "no such file" error, e.g. which package provides the file.
  /// - Returns: the decompressed bytes.
  /// - Throws: `DataError` naming `path` if the file is missing, unreadable or corrupt.
  public static func decompress(path: String, hint: String? = nil) throws -> [UInt8] {
    let raw = try DataFiles.readAll(path, hint: hint)
    guard raw.count >= 2, raw[0] == 0x1f, raw[1] == 0x8b else { return raw }
    return try inflateGzip(raw, path: path)
  }

  /// Decompresses an in-memory gzip stream; `path` is only used in error messages.
  static func inflateGzip(_ input: [UInt8], path: String) throws -> [UInt8] {
    // The gzip trailer's ISIZE (uncompressed size mod 2^32) is a good first capacity.
    var capacity = max(1 << 16, input.count * 2)
    if input.count >= 18 {
      let n = input.count
      let isize = Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16
        | Int(input[n - 1]) << 24
      // A little slack so inflate can reach the end of the stream without growing the buffer.
      // ISIZE comes from the file: deflate expands at most ~1032:1, so a larger claim is
      // corrupt and must not make us allocate it up front (the buffer still grows on demand).
      if isize > 0 { capacity = min(isize, input.count * 1032) + 1024 }
    }
    var output = [UInt8](repeating: 0, count: capacity)
    var produced = 0
    var input = input
    var stream = z_stream()
    let status = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
    guard status == Z_OK else { throw DataError.gzip(path: path, reason: zlibMessage(status, stream)) }
    defer { inflateEnd(&stream) }

    try input.withUnsafeMutableBufferPointer { inBuf in
      var consumed = 0
      while true {
        if produced == output.count {
          output.append(contentsOf: repeatElement(0, count: max(1 << 16, output.count / 2)))
        }
        let availIn = min(inBuf.count - consumed, Int(UInt32.max))
        let availOut = min(output.count - produced, Int(UInt32.max))
        let result: Int32 = output.withUnsafeMutableBufferPointer { outBuf in
          stream.next_in = inBuf.baseAddress! + consumed
          stream.avail_in = UInt32(availIn)
          stream.next_out = outBuf.baseAddress! + produced
          stream.avail_out = UInt32(availOut)
          return inflate(&stream, Z_NO_FLUSH)
        }
        consumed += availIn - Int(stream.avail_in)
        produced += availOut - Int(stream.avail_out)
        switch result {
        case Z_STREAM_END:
          // Another gzip member may follow (skip zero padding some tools append).
          while consumed < inBuf.count && inBuf[consumed] == 0 { consumed += 1 }
          if consumed >= inBuf.count { return }
          let reset = inflateReset(&stream)
          if reset != Z_OK { throw DataError.gzip(path: path, reason: zlibMessage(reset, stream)) }
        case Z_OK:
          continue
        case Z_BUF_ERROR:
          // No progress possible: either the output is full (grown above) or the input ended.
          if stream.avail_out == 0 { continue }
          throw DataError.gzip(path: path, reason: "unexpected end of compressed data")
        default:
          throw DataError.gzip(path: path, reason: zlibMessage(result, stream))
        }
      }
    }
    output.removeSubrange(produced...)
    return output
  }

  private static func zlibMessage(_ code: Int32, _ stream: z_stream) -> String {
    if let msg = stream.msg { return "\(String(cString: msg)) (zlib code \(code))" }
    return "zlib code \(code)"
  }
}
