import Foundation

/// What `ImagePack.pack` writes beside the record shards: `dataset.json` of a packed image set.
public struct ImageSetInfo: Codable, Equatable, Sendable {
  public static let fileName = "dataset.json"
  public static let formatName = "parallax-images"

  public struct Part: Codable, Equatable, Sendable {
    /// File name inside the set's directory.
    public var file: String
    public var count: Int
  }

  public struct Skipped: Codable, Equatable, Sendable {
    public var path: String
    public var reason: String
  }

  public var format = ImageSetInfo.formatName
  public var version = 1
  public var channels: Int
  /// Images are `size×size`.
  public var size: Int
  public var fit: String
  public var count: Int
  /// The label slots (one byte per slot in every record): `class`, or a manifest's columns.
  public var labelNames: [String]
  /// Class names per slot, indexed by label.
  public var classNames: [[String]]
  /// Per-channel mean and standard deviation of `x/255` over the whole set (population).
  public var mean: [Float]
  public var std: [Float]
  public var parts: [Part]
  /// Files left out under `--on-bad-file skip`, with the reason.
  public var skipped: [Skipped]
  /// Where the images came from.
  public var source: String

  /// Reads and checks `directory/dataset.json`.
  public static func read(directory: String) throws -> ImageSetInfo {
    let json = directory + "/" + fileName
    guard FileManager.default.fileExists(atPath: json) else {
      throw DataError.fileNotFound(path: json, hint: "pack images with `parallax data pack --images DIR --out \(directory)`")
    }
    let info: ImageSetInfo
    do {
      info = try JSONDecoder().decode(ImageSetInfo.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: json)))
    } catch {
      throw DataError.badHeader(path: json, reason: "not a packed image set: \(error)")
    }
    guard info.format == formatName, info.version == 1 else {
      throw DataError.badHeader(path: json, reason: "format \(info.format) version \(info.version)")
    }
    guard info.channels == 1 || info.channels == 3, (1...4096).contains(info.size), info.count > 0,
      info.mean.count == info.channels, info.std.count == info.channels,
      info.std.allSatisfy({ $0 > 0 && $0.isFinite }), info.mean.allSatisfy(\.isFinite),
      info.classNames.count == info.labelNames.count, !info.labelNames.isEmpty, !info.parts.isEmpty
    else { throw DataError.badHeader(path: json, reason: "inconsistent channels, size, statistics, label slots or parts") }
    return info
  }
}

/// One image to pack and its labels (one per slot).
public struct ImageItem: Sendable {
  public var path: String
  public var labels: [Int]
  public init(path: String, labels: [Int]) {
    self.path = path
    self.labels = labels
  }
}

/// A list of labelled image files: an ImageFolder tree or a CSV manifest.
public struct ImageList: Sendable {
  public var items: [ImageItem]
  public var labelNames: [String]
  public var classNames: [[String]]

  static let extensions: Set<String> = ["png", "jpg", "jpeg"]

  /// One sub-folder per class (sorted by name: class k is the k-th), PNG and JPEG files in
  /// each (sorted by name; other files are ignored, hidden ones too).
  public static func folder(_ root: String) throws -> ImageList {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
      throw DataError.fileNotFound(path: root, hint: "--images wants a folder with one sub-folder of PNG/JPEG files per class")
    }
    let classes = try fm.contentsOfDirectory(atPath: root).filter { name in
      var d: ObjCBool = false
      return !name.hasPrefix(".") && fm.fileExists(atPath: root + "/" + name, isDirectory: &d) && d.boolValue
    }.sorted()
    guard !classes.isEmpty else { throw DataError.invalidArgument("\(root): no class sub-folders") }
    guard classes.count <= 256 else { throw DataError.invalidArgument("\(root): \(classes.count) classes (a label is one byte: at most 256)") }
    var items: [ImageItem] = []
    for (k, name) in classes.enumerated() {
      let dir = root + "/" + name
      for f in try fm.contentsOfDirectory(atPath: dir).sorted()
      where !f.hasPrefix(".") && extensions.contains((f as NSString).pathExtension.lowercased()) {
        items.append(ImageItem(path: dir + "/" + f, labels: [k]))
      }
    }
    guard !items.isEmpty else { throw DataError.invalidArgument("\(root): no .png/.jpg/.jpeg files in the class folders") }
    return ImageList(items: items, labelNames: ["class"], classNames: [classes])
  }

  /// A CSV manifest with a header: a `path` column (relative paths are relative to the
  /// manifest's folder) and one or more label columns, whose distinct values (sorted) are the
  /// classes. Commas inside fields are not supported.
  public static func manifest(_ csv: String) throws -> ImageList {
    let text: String
    do { text = try String(contentsOfFile: csv, encoding: .utf8) } catch {
      throw DataError.fileNotFound(path: csv, hint: nil)
    }
    var lines = text.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
    guard !lines.isEmpty else { throw DataError.invalidArgument("\(csv): empty manifest") }
    let header = lines.removeFirst()
    guard let pathColumn = header.firstIndex(of: "path") else {
      throw DataError.invalidArgument("\(csv): no 'path' column in the header (\(header.joined(separator: ",")))")
    }
    let labelColumns = header.indices.filter { $0 != pathColumn }
    guard !labelColumns.isEmpty, labelColumns.count <= 64 else {
      throw DataError.invalidArgument("\(csv): needs 1–64 label columns beside 'path'")
    }
    let base = (csv as NSString).deletingLastPathComponent
    var classes = [[String]](repeating: [], count: labelColumns.count)
    for (row, fields) in lines.enumerated() {
      guard fields.count == header.count else {
        throw DataError.invalidArgument("\(csv): line \(row + 2) has \(fields.count) fields, the header \(header.count)")
      }
    }
    for (j, col) in labelColumns.enumerated() {
      classes[j] = Array(Set(lines.map { $0[col] })).sorted()
      guard classes[j].count <= 256 else {
        throw DataError.invalidArgument("\(csv): column '\(header[col])' has \(classes[j].count) classes (at most 256)")
      }
    }
    let index = classes.map { names in Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) }) }
    let items = lines.map { fields in
      let p = fields[pathColumn]
      return ImageItem(
        path: p.hasPrefix("/") || base.isEmpty ? p : base + "/" + p,
        labels: labelColumns.enumerated().map { j, col in index[j][fields[col]]! })
    }
    guard !items.isEmpty else { throw DataError.invalidArgument("\(csv): no rows") }
    return ImageList(items: items, labelNames: labelColumns.map { header[$0] }, classNames: classes)
  }
}

/// Packs image files into a directory of record shards (`part-NNNNN.pxrs`, each at most
/// `maxPartBytes`) and `dataset.json`. Streams: one decoded image in memory at a time.
public enum ImagePack {
  public struct Options: Sendable {
    public var size: Int
    public var channels: Int
    public var fit: ImageFit
    public var onBadFile: BadFilePolicy
    public var maxPartBytes: Int
    public init(size: Int, channels: Int, fit: ImageFit = .crop, onBadFile: BadFilePolicy = .fail, maxPartBytes: Int = 1 << 30) {
      self.size = size
      self.channels = channels
      self.fit = fit
      self.onBadFile = onBadFile
      self.maxPartBytes = maxPartBytes
    }
  }

  /// Writes the set to `out`, which must not exist: everything goes to a temporary sibling
  /// directory renamed into place at the end, so a failure leaves nothing half-written and an
  /// existing directory is never touched. `progress(done, total)` is called every 256 images.
  @discardableResult
  public static func pack(
    _ list: ImageList, to out: String, options o: Options, source: String,
    progress: (Int, Int) -> Void = { _, _ in }
  ) throws -> ImageSetInfo {
    try pack(
      count: list.items.count, labelNames: list.labelNames, classNames: list.classNames, to: out, options: o,
      source: source, progress: progress
    ) { i in
      let item = list.items[i]
      do {
        return (item.labels, try ImageFile.read(item.path, channels: o.channels))
      } catch {
        throw BadImage(path: item.path, error: error)
      }
    }
  }

  /// An image that could not be read: under `--on-bad-file skip` it is listed and left out.
  public struct BadImage: Error {
    public var path: String
    public var error: Error
    public init(path: String, error: Error) {
      self.path = path
      self.error = error
    }
  }

  /// Packs `count` images that `image(i)` gives (labels and the decoded image; a `BadImage`
  /// thrown there is handled by the options' policy, any other error stops the pack).
  @discardableResult
  public static func pack(
    count: Int, labelNames: [String], classNames: [[String]], to out: String, options o: Options, source: String,
    progress: (Int, Int) -> Void = { _, _ in },
    image: (Int) throws -> (labels: [Int], image: DecodedImage)
  ) throws -> ImageSetInfo {
    guard o.size >= 1, o.size <= 4096 else { throw DataError.invalidArgument("--size must be 1…4096 (got \(o.size))") }
    guard o.channels == 1 || o.channels == 3 else { throw DataError.invalidArgument("--channels must be 1 or 3 (got \(o.channels))") }
    let fm = FileManager.default
    guard !fm.fileExists(atPath: out) else {
      throw DataError.invalidArgument("\(out) exists; pack writes a new directory (remove it or choose another --out)")
    }
    let temp = out + ".partial-\(getpid())"
    try? fm.removeItem(atPath: temp)
    do {
      try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)
    } catch {
      throw DataError.io(path: temp, operation: "mkdir", reason: error.localizedDescription)
    }
    do {
      let info = try write(
        count: count, labelNames: labelNames, classNames: classNames, to: temp, options: o, source: source,
        progress: progress, image: image)
      try fm.moveItem(atPath: temp, toPath: out)
      return info
    } catch {
      try? fm.removeItem(atPath: temp)
      throw error
    }
  }

  static func write(
    count total: Int, labelNames: [String], classNames: [[String]], to dir: String, options o: Options,
    source: String, progress: (Int, Int) -> Void, image: (Int) throws -> (labels: [Int], image: DecodedImage)
  ) throws -> ImageSetInfo {
    let payload = o.channels * o.size * o.size
    let record = labelNames.count + payload
    let perPart = max(1, o.maxPartBytes / record)
    var parts: [ImageSetInfo.Part] = []
    var writer: RecordShardWriter?
    var skipped: [ImageSetInfo.Skipped] = []
    var sum = [Double](repeating: 0, count: o.channels), sq = [Double](repeating: 0, count: o.channels)
    var count = 0
    func finishPart() throws {
      guard let w = writer else { return }
      try w.finish()
      parts.append(.init(file: (w.path as NSString).lastPathComponent, count: w.recordCount))
      writer = nil
    }
    for i in 0..<total {
      if i % 256 == 0 { progress(i, total) }
      let pixels: [UInt8]
      let labels: [Int]
      do {
        let item = try image(i)
        labels = item.labels
        pixels = item.image.fitted(size: o.size, fit: o.fit)
      } catch let bad as BadImage {
        if o.onBadFile == .fail { throw bad.error }
        skipped.append(.init(path: bad.path, reason: "\(bad.error)"))
        continue
      }
      if writer == nil {
        writer = try RecordShardWriter(
          path: dir + String(format: "/part-%05d.pxrs", parts.count), channels: o.channels, height: o.size,
          width: o.size, labelCount: labelNames.count)
      }
      try writer!.append(labels: labels.map { UInt8($0) }, payload: pixels)
      let plane = o.size * o.size
      for ch in 0..<o.channels {
        var s = 0.0, q = 0.0
        for p in pixels[(ch * plane)..<((ch + 1) * plane)] {
          let v = Double(p) / 255
          s += v
          q += v * v
        }
        sum[ch] += s
        sq[ch] += q
      }
      count += 1
      if writer!.recordCount == perPart { try finishPart() }
    }
    try finishPart()
    progress(total, total)
    guard count > 0 else {
      throw DataError.invalidArgument("no image could be packed (\(skipped.count) bad files; first: \(skipped.first.map { "\($0.path): \($0.reason)" } ?? "-"))")
    }
    let n = Double(count) * Double(o.size * o.size)
    let mean = sum.map { $0 / n }
    let std = zip(sq, mean).map { max($0 / n - $1 * $1, 0).squareRoot() }
    let info = ImageSetInfo(
      channels: o.channels, size: o.size, fit: o.fit.rawValue, count: count, labelNames: labelNames,
      classNames: classNames, mean: mean.map { Float($0) }, std: std.map { Float(max($0, 1e-6)) }, parts: parts,
      skipped: skipped, source: source)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try encoder.encode(info).write(to: URL(fileURLWithPath: dir + "/" + ImageSetInfo.fileName))
    return info
  }
}

/// A packed image set (`ImagePack`) as one `ImageSource` over its parts, read by offset.
public final class ImageSetSource: ImageSource {
  public let directory: String
  public let info: ImageSetInfo
  public let parts: [RecordShard]
  /// First global index of each part.
  private let starts: [Int]
  /// Which label slot `label(_:)` returns.
  public let labelSlot: Int

  /// Opens `directory/dataset.json` and every part, checking that they agree.
  public init(directory: String, labelSlot: Int = 0) throws {
    let json = directory + "/" + ImageSetInfo.fileName
    let info = try ImageSetInfo.read(directory: directory)
    guard labelSlot >= 0, labelSlot < info.labelNames.count else {
      throw DataError.invalidArgument("\(json): label slot \(labelSlot) of \(info.labelNames.count)")
    }
    var parts: [RecordShard] = []
    var starts: [Int] = []
    var total = 0
    for p in info.parts {
      guard !p.file.contains("/") else { throw DataError.badHeader(path: json, reason: "part '\(p.file)' is not a file name") }
      let shard = try RecordShard(path: directory + "/" + p.file)
      let h = shard.header
      guard h.recordCount == p.count, h.channels == info.channels, h.height == info.size, h.width == info.size,
        h.labelCount == info.labelNames.count
      else {
        throw DataError.badHeader(
          path: shard.path, reason: "holds \(h.recordCount) records of \(h.channels)×\(h.height)×\(h.width), \(h.labelCount) labels; \(json) says \(p.count) of \(info.channels)×\(info.size)×\(info.size), \(info.labelNames.count)")
      }
      for slot in 0..<h.labelCount {
        let classes = info.classNames[slot].count
        if let bad = (0..<h.recordCount).first(where: { shard.label($0, slot: slot) >= classes }) {
          throw DataError.badHeader(path: shard.path, reason: "record \(bad) has label \(shard.label(bad, slot: slot)) in slot '\(info.labelNames[slot])' of \(classes) classes")
        }
      }
      starts.append(total)
      total += p.count
      parts.append(shard)
    }
    guard total == info.count else { throw DataError.badHeader(path: json, reason: "parts hold \(total) images, count says \(info.count)") }
    self.directory = directory
    self.info = info
    self.parts = parts
    self.starts = starts
    self.labelSlot = labelSlot
  }

  public var count: Int { info.count }
  public var channels: Int { info.channels }
  public var height: Int { info.size }
  public var width: Int { info.size }

  /// The part holding global index `i` and the index inside it.
  @inline(__always)
  func locate(_ i: Int) -> (part: Int, index: Int) {
    var lo = 0, hi = starts.count - 1
    while lo < hi {
      let mid = (lo + hi + 1) / 2
      if starts[mid] <= i { lo = mid } else { hi = mid - 1 }
    }
    return (lo, i - starts[lo])
  }

  public func label(_ i: Int) -> Int { label(i, slot: labelSlot) }
  public func label(_ i: Int, slot: Int) -> Int {
    let (p, j) = locate(i)
    return parts[p].labelCount == 0 ? 0 : parts[p].label(j, slot: slot)
  }

  public func pixels(_ i: Int, into: UnsafeMutablePointer<UInt8>) throws {
    guard i >= 0, i < count else { throw DataError.indexOutOfRange(what: "image", index: i, count: count) }
    let (p, j) = locate(i)
    try parts[p].readPayload(index: j, into: into)
  }

  /// With a reader every part is visited (with its possibly empty share of `indices`), in
  /// order, so that a collective reader sees the same calls on every rank.
  public func pixels(batch indices: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    let size = pixelsPerImage
    guard let reader else {
      // pread: straight into place, no grouping.
      for (slot, i) in indices.enumerated() { try pixels(i, into: into + slot * size) }
      return
    }
    var perPart = [[(slot: Int, index: Int)]](repeating: [], count: parts.count)
    for (slot, i) in indices.enumerated() {
      guard i >= 0, i < count else { throw DataError.indexOutOfRange(what: "image", index: i, count: count) }
      let (p, j) = locate(i)
      perPart[p].append((slot, j))
    }
    let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, indices.count * size))
    defer { scratch.deallocate() }
    for (p, shard) in parts.enumerated() {
      try shard.readPayloads(perPart[p].map(\.index), into: scratch, reader: reader)
      for (k, e) in perPart[p].enumerated() { (into + e.slot * size).update(from: scratch + k * size, count: size) }
    }
  }

  /// Bytes read from the parts' payloads so far (all threads).
  public var bytesRead: Int { parts.reduce(0) { $0 + $1.bytesRead } }
}

/// The images of a packed set at `indices` (a split), in that order, as an `ImageSource`.
public final class ImageSubset: ImageSource {
  public let base: ImageSetSource
  public let indices: [Int]

  public init(_ base: ImageSetSource, indices: [Int]) throws {
    guard let bad = indices.first(where: { $0 < 0 || $0 >= base.count }) else {
      self.base = base
      self.indices = indices
      return
    }
    throw DataError.indexOutOfRange(what: "\(base.directory): image", index: bad, count: base.count)
  }

  public var count: Int { indices.count }
  public var channels: Int { base.channels }
  public var height: Int { base.height }
  public var width: Int { base.width }
  public func label(_ i: Int) -> Int { base.label(indices[i]) }
  public func label(_ i: Int, slot: Int) -> Int { base.label(indices[i], slot: slot) }
  public func pixels(_ i: Int, into: UnsafeMutablePointer<UInt8>) throws {
    guard i >= 0, i < count else { throw DataError.indexOutOfRange(what: "image", index: i, count: count) }
    try base.pixels(indices[i], into: into)
  }
  public func pixels(batch local: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    for i in local where i < 0 || i >= count { throw DataError.indexOutOfRange(what: "image", index: i, count: count) }
    try base.pixels(batch: local.map { indices[$0] }, into: into, reader: reader)
  }
}
