import CImage
import Foundation

/// A decoded 8-bit image, interleaved `H×W×C` (C = 1 gray or 3 RGB), as the codecs give it.
public struct DecodedImage: Equatable, Sendable {
  public var width: Int, height: Int, channels: Int
  /// `height·width·channels` bytes, row-major, channels interleaved.
  public var pixels: [UInt8]

  public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
    precondition(pixels.count == width * height * channels)
    self.width = width
    self.height = height
    self.channels = channels
    self.pixels = pixels
  }
}

/// PNG and JPEG files through libpng's simplified API and libjpeg-turbo's TurboJPEG API
/// (neither needs `setjmp`: both return their errors). Every failure is a `DataError` naming
/// the file; nothing traps on a corrupt, truncated or hostile file.
public enum ImageFile {
  /// Largest image decoded, in pixels (a header claiming more is refused before anything is
  /// allocated: a 64-megapixel RGB image is 192 MiB).
  public static let maxPixels = 1 << 26

  public enum Format: String, Sendable { case png, jpeg }

  /// The format by content (PNG signature, JPEG SOI marker), or nil.
  public static func format(of bytes: [UInt8]) -> Format? {
    if bytes.count >= 8, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
    if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
    return nil
  }

  /// Reads and decodes the file at `path` to `channels` (1: gray, 3: RGB; libpng and
  /// TurboJPEG convert, alpha is composed over black).
  public static func read(_ path: String, channels: Int) throws -> DecodedImage {
    let bytes: [UInt8]
    do {
      bytes = [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
    } catch {
      throw DataError.io(path: path, operation: "read", reason: "\(error.localizedDescription)")
    }
    return try decode(bytes, channels: channels, path: path)
  }

  /// Decodes PNG or JPEG bytes; `path` names the source in errors.
  public static func decode(_ bytes: [UInt8], channels: Int, path: String) throws -> DecodedImage {
    guard channels == 1 || channels == 3 else { throw DataError.invalidArgument("channels must be 1 or 3, not \(channels)") }
    switch format(of: bytes) {
    case .png: return try decodePNG(bytes, channels: channels, path: path)
    case .jpeg: return try decodeJPEG(bytes, channels: channels, path: path)
    case nil:
      let head = bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
      throw DataError.badMagic(path: path, found: head.isEmpty ? "an empty file" : head, expected: "a PNG or JPEG signature")
    }
  }

  static func checkSize(_ w: Int, _ h: Int, path: String) throws {
    guard w > 0, h > 0, w <= maxPixels, h <= maxPixels, w * h <= maxPixels else {
      throw DataError.badHeader(path: path, reason: "image size \(w)×\(h) (at most \(maxPixels) pixels)")
    }
  }

  static func message(_ image: png_image) -> String {
    withUnsafeBytes(of: image.message) { raw in
      String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
  }

  static func decodePNG(_ bytes: [UInt8], channels: Int, path: String) throws -> DecodedImage {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    let begun = bytes.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
    guard begun != 0 else { throw DataError.badHeader(path: path, reason: "PNG: \(message(image))") }
    defer { png_image_free(&image) }
    let w = Int(image.width), h = Int(image.height)
    try checkSize(w, h, path: path)
    image.format = channels == 1 ? UInt32(PNG_FORMAT_GRAY) : UInt32(PNG_FORMAT_RGB)
    var pixels = [UInt8](repeating: 0, count: w * h * channels)
    let done = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
    guard done != 0 else { throw DataError.badHeader(path: path, reason: "PNG: \(message(image))") }
    return DecodedImage(width: w, height: h, channels: channels, pixels: pixels)
  }

  static func tjMessage(_ handle: tjhandle?) -> String {
    guard let c = tjGetErrorStr2(handle) else { return "unknown error" }
    return String(cString: c)
  }

  static func decodeJPEG(_ bytes: [UInt8], channels: Int, path: String) throws -> DecodedImage {
    guard let handle = tjInitDecompress() else { throw DataError.io(path: path, operation: "tjInitDecompress", reason: tjMessage(nil)) }
    defer { tjDestroy(handle) }
    var w: Int32 = 0, h: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
    let header = bytes.withUnsafeBufferPointer {
      tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &w, &h, &subsampling, &colorspace)
    }
    guard header == 0 else { throw DataError.badHeader(path: path, reason: "JPEG: \(tjMessage(handle))") }
    try checkSize(Int(w), Int(h), path: path)
    let format = channels == 1 ? Int32(TJPF_GRAY.rawValue) : Int32(TJPF_RGB.rawValue)
    var pixels = [UInt8](repeating: 0, count: Int(w) * Int(h) * channels)
    let status = bytes.withUnsafeBufferPointer { src in
      pixels.withUnsafeMutableBufferPointer { dst in
        tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, w, 0, h, format, 0)
      }
    }
    // A warning (e.g. a truncated scan TurboJPEG padded) is an error too: the pixels are not
    // the file's.
    guard status == 0 else { throw DataError.badHeader(path: path, reason: "JPEG: \(tjMessage(handle))") }
    return DecodedImage(width: Int(w), height: Int(h), channels: channels, pixels: pixels)
  }

  /// PNG bytes of `image` (lossless).
  public static func encodePNG(_ image: DecodedImage) throws -> [UInt8] {
    var png = png_image()
    png.version = UInt32(PNG_IMAGE_VERSION)
    png.width = UInt32(image.width)
    png.height = UInt32(image.height)
    png.format = image.channels == 1 ? UInt32(PNG_FORMAT_GRAY) : UInt32(PNG_FORMAT_RGB)
    var size: Int = 0
    let sized = image.pixels.withUnsafeBytes {
      png_image_write_to_memory(&png, nil, &size, 0, $0.baseAddress, 0, nil)
    }
    guard sized != 0 else { throw DataError.invalidArgument("PNG encode: \(message(png))") }
    var out = [UInt8](repeating: 0, count: size)
    let written = image.pixels.withUnsafeBytes { src in
      out.withUnsafeMutableBytes { png_image_write_to_memory(&png, $0.baseAddress, &size, 0, src.baseAddress, 0, nil) }
    }
    guard written != 0 else { throw DataError.invalidArgument("PNG encode: \(message(png))") }
    return Array(out.prefix(size))
  }

  /// JPEG bytes of `image` at `quality` (1–100; 4:4:4 chroma, or gray).
  public static func encodeJPEG(_ image: DecodedImage, quality: Int = 95) throws -> [UInt8] {
    guard let handle = tjInitCompress() else { throw DataError.invalidArgument("tjInitCompress: \(tjMessage(nil))") }
    defer { tjDestroy(handle) }
    var buffer: UnsafeMutablePointer<UInt8>? = nil
    var size: UInt = 0
    let gray = image.channels == 1
    let status = image.pixels.withUnsafeBufferPointer {
      tjCompress2(
        handle, $0.baseAddress, Int32(image.width), 0, Int32(image.height),
        Int32(gray ? TJPF_GRAY.rawValue : TJPF_RGB.rawValue), &buffer, &size,
        Int32(gray ? TJSAMP_GRAY.rawValue : TJSAMP_444.rawValue), Int32(quality), 0)
    }
    defer { if let buffer { tjFree(buffer) } }
    guard status == 0, let buffer else { throw DataError.invalidArgument("JPEG encode: \(tjMessage(handle))") }
    return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
  }
}

/// How an image of another aspect ratio becomes `size×size`.
public enum ImageFit: String, Sendable, CaseIterable {
  /// Scale the shorter side to `size` and keep the centre.
  case crop
  /// Scale the longer side to `size` and pad the rest with zeros, centred.
  case pad
}

extension DecodedImage {
  /// This image as `size×size`, planar `C×H×W` (the record-shard payload), resampled by area
  /// averaging (each output pixel is the coverage-weighted mean of the source pixels under
  /// it: OpenCV's `INTER_AREA`; when enlarging, that is nearest-neighbour-like).
  public func fitted(size: Int, fit: ImageFit) -> [UInt8] {
    let c = channels
    var out = [UInt8](repeating: 0, count: c * size * size)
    // The source rectangle mapped onto the output square (crop) or the output rectangle the
    // whole source maps onto (pad).
    let scale: Double
    var srcX0 = 0.0, srcY0 = 0.0
    var dstX0 = 0, dstY0 = 0, dstW = size, dstH = size
    switch fit {
    case .crop:
      scale = Double(size) / Double(min(width, height))
      srcX0 = (Double(width) - Double(size) / scale) / 2
      srcY0 = (Double(height) - Double(size) / scale) / 2
    case .pad:
      scale = Double(size) / Double(max(width, height))
      dstW = max(1, min(size, Int((Double(width) * scale).rounded())))
      dstH = max(1, min(size, Int((Double(height) * scale).rounded())))
      dstX0 = (size - dstW) / 2
      dstY0 = (size - dstH) / 2
    }
    let sx = fit == .crop ? 1 / scale : Double(width) / Double(dstW)
    let sy = fit == .crop ? 1 / scale : Double(height) / Double(dstH)
    /// Source pixel indices and coverage weights of output coordinate `o` along an axis.
    func taps(_ o: Int, origin: Double, step: Double, limit: Int) -> [(Int, Double)] {
      let a = origin + Double(o) * step, b = a + step
      var r: [(Int, Double)] = []
      var i = max(0, Int(a.rounded(.down)))
      while Double(i) < b && i < limit {
        let w = min(b, Double(i + 1)) - max(a, Double(i))
        if w > 0 { r.append((i, w)) }
        i += 1
      }
      if r.isEmpty { r = [(min(limit - 1, max(0, Int(a))), 1)] }
      return r
    }
    let xs = (0..<dstW).map { taps($0, origin: srcX0, step: sx, limit: width) }
    let ys = (0..<dstH).map { taps($0, origin: srcY0, step: sy, limit: height) }
    for (oy, ty) in ys.enumerated() {
      for (ox, tx) in xs.enumerated() {
        for ch in 0..<c {
          var acc = 0.0, total = 0.0
          for (iy, wy) in ty {
            let row = iy * width
            for (ix, wx) in tx {
              acc += wy * wx * Double(pixels[(row + ix) * c + ch])
              total += wy * wx
            }
          }
          out[(ch * size + dstY0 + oy) * size + dstX0 + ox] = UInt8(min(255, max(0, (acc / total).rounded())))
        }
      }
    }
    return out
  }
}
