import Foundation
import SystemPackage

/// The CIFAR-10 binary layout (`cifar-10-batches-bin`): `data_batch_1.bin` … `data_batch_5.bin`
/// (train) and `test_batch.bin` (test), each a run of 3073-byte records — one label byte, then
/// 32×32 red, green and blue planes — and `batches.meta.txt` with the ten class names.
public enum CIFAR10 {
  public static let recordSize = 3073
  public static let side = 32
  public static let defaultClassNames = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
  ]

  public enum Split: String, Sendable { case train, test }

  /// The batch files of a split, in order.
  public static func files(directory: String, split: Split) -> [String] {
    split == .train ? (1...5).map { "\(directory)/data_batch_\($0).bin" } : ["\(directory)/test_batch.bin"]
  }

  /// `batches.meta.txt`'s ten names, or the standard ones when the file is absent.
  public static func classNames(directory: String) throws -> [String] {
    let meta = directory + "/batches.meta.txt"
    guard let text = try? String(contentsOfFile: meta, encoding: .utf8) else { return defaultClassNames }
    let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard names.count == 10 else { throw DataError.badHeader(path: meta, reason: "\(names.count) class names, expected 10") }
    return names
  }

  /// Packs a split into an image set (`ImagePack`), reading one record at a time: resized and
  /// converted as `options` say (32 and 3 keep the records' pixels exactly).
  @discardableResult
  public static func pack(
    directory: String, split: Split, to out: String, options: ImagePack.Options,
    progress: (Int, Int) -> Void = { _, _ in }
  ) throws -> ImageSetInfo {
    var handles: [(path: String, fd: FileDescriptor, records: Int)] = []
    defer { for h in handles { try? h.fd.close() } }
    for path in files(directory: directory, split: split) {
      guard FileManager.default.fileExists(atPath: path) else {
        throw DataError.fileNotFound(path: path, hint: "--cifar10 wants the folder of the CIFAR-10 binary version (cifar-10-batches-bin)")
      }
      let fd = try FileDescriptor.openForReading(path)
      let size = try fd.size(path: path)
      guard size > 0, size % recordSize == 0 else {
        try? fd.close()
        throw DataError.badHeader(path: path, reason: "\(size) bytes is not a whole number of \(recordSize)-byte records")
      }
      handles.append((path, fd, size / recordSize))
    }
    let starts = handles.reduce(into: [0]) { $0.append($0.last! + $1.records) }
    var record = [UInt8](repeating: 0, count: recordSize)
    let names = try classNames(directory: directory)
    let plane = side * side
    return try ImagePack.pack(
      count: starts.last!, labelNames: ["class"], classNames: [names], to: out, options: options,
      source: directory, progress: progress
    ) { i in
      let f = starts.lastIndex { $0 <= i }!
      let h = handles[f]
      let j = i - starts[f]
      try record.withUnsafeMutableBytes { try h.fd.readFully(at: j * recordSize, into: $0, path: h.path) }
      guard record[0] < 10 else {
        throw ImagePack.BadImage(path: "\(h.path) record \(j)", error: DataError.badHeader(path: h.path, reason: "record \(j) has label \(record[0])"))
      }
      var pixels = [UInt8](repeating: 0, count: plane * options.channels)
      for p in 0..<plane {
        let r = record[1 + p], g = record[1 + plane + p], b = record[1 + 2 * plane + p]
        if options.channels == 3 {
          pixels[3 * p] = r
          pixels[3 * p + 1] = g
          pixels[3 * p + 2] = b
        } else {
          let y: Double = 0.299 * Double(r) + 0.587 * Double(g) + 0.114 * Double(b)
          pixels[p] = UInt8(y.rounded())
        }
      }
      return ([Int(record[0])], DecodedImage(width: side, height: side, channels: options.channels, pixels: pixels))
    }
  }
}
