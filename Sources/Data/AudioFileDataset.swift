import Foundation

/// Audio files decoded on demand with libsndfile and resampled to `sampleRate`: a folder per
/// class, a CSV manifest, or the MagnaTagATune annotation file.
///
/// Construction probes every file's header (cheap: no decoding), so a corrupt or empty file is
/// found before training starts: under `BadFilePolicy.fail` the first one throws an
/// `AudioError` naming it; under `.skip` it is left out and recorded in `skipped`.
public final class AudioFileDataset: AudioSource {
  /// One clip: its path and its class in each label slot.
  public struct Entry: Equatable, Sendable {
    public var path: String
    public var labels: [Int]
    public init(path: String, labels: [Int]) {
      self.path = path
      self.labels = labels
    }
  }

  public let entries: [Entry]
  public let sampleRate: Int
  public let labelNames: [String]
  public let classNames: [[String]]
  /// Files left out under `.skip`, with the reason.
  public let skipped: [AudioError]

  public var count: Int { entries.count }

  /// - Parameters:
  ///   - probe: open every file's header now and apply `onBadFile` (default true).
  public init(
    entries: [Entry], sampleRate: Int, labelNames: [String], classNames: [[String]],
    onBadFile: BadFilePolicy = .fail, probe: Bool = true
  ) throws {
    guard sampleRate > 0 else { throw DataError.invalidArgument("audio sample rate \(sampleRate) must be positive") }
    guard labelNames.count == classNames.count else {
      throw DataError.invalidArgument("\(labelNames.count) label names but \(classNames.count) class lists")
    }
    var kept: [Entry] = []
    var skipped: [AudioError] = []
    for e in entries {
      guard e.labels.count == labelNames.count else {
        throw DataError.invalidArgument("\(e.path): \(e.labels.count) labels, expected \(labelNames.count)")
      }
      if probe {
        do {
          _ = try AudioDecoder.info(e.path)
        } catch let error as AudioError {
          if onBadFile == .fail { throw error }
          skipped.append(error)
          continue
        }
      }
      kept.append(e)
    }
    self.entries = kept
    self.sampleRate = sampleRate
    self.labelNames = labelNames
    self.classNames = classNames
    self.skipped = skipped
  }

  public func label(_ i: Int, slot: Int) -> Int { entries[i].labels[slot] }

  public func samples(_ i: Int) throws -> [Float] {
    try AudioDecoder.decode(entries[i].path, sampleRate: sampleRate).samples
  }

  /// File extensions read from folders.
  public static let audioExtensions: Set<String> = ["wav", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "au"]

  /// A folder per class: `root/<class>/*.wav|flac|ogg|mp3…`. Classes are the sub-folder names
  /// sorted; the one label slot is named `class`.
  public static func folderPerClass(
    root: String, sampleRate: Int, onBadFile: BadFilePolicy = .fail
  ) throws -> AudioFileDataset {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
      throw DataError.fileNotFound(path: root, hint: "expected a folder with one sub-folder per class")
    }
    let classes = try fm.contentsOfDirectory(atPath: root).filter {
      var d: ObjCBool = false
      return fm.fileExists(atPath: "\(root)/\($0)", isDirectory: &d) && d.boolValue && !$0.hasPrefix(".")
    }.sorted()
    guard !classes.isEmpty else { throw DataError.invalidArgument("\(root): no class sub-folders") }
    var entries: [Entry] = []
    for (c, name) in classes.enumerated() {
      let files = try fm.contentsOfDirectory(atPath: "\(root)/\(name)")
        .filter { audioExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
      entries += files.map { Entry(path: "\(root)/\(name)/\($0)", labels: [c]) }
    }
    return try AudioFileDataset(
      entries: entries, sampleRate: sampleRate, labelNames: ["class"], classNames: [classes],
      onBadFile: onBadFile)
  }

  /// A CSV manifest with a header row: a `path` column (relative paths are resolved against
  /// the manifest's folder) and label columns. Each label column becomes a slot whose classes
  /// are its distinct values, sorted (numerically if all are integers). A column named in
  /// `multiLabelColumns` holds `;`-separated tags and becomes one 0/1 slot per tag, named
  /// `column:tag`.
  ///
  /// - Parameter labelColumns: the columns to use, in order (default: all but `path`).
  public static func manifest(
    csv path: String, sampleRate: Int, labelColumns: [String]? = nil, multiLabelColumns: Set<String> = [],
    onBadFile: BadFilePolicy = .fail
  ) throws -> AudioFileDataset {
    let rows = try CSV.read(path, separator: ",")
    guard let header = rows.first else { throw DataError.badHeader(path: path, reason: "empty manifest") }
    guard let pathColumn = header.firstIndex(of: "path") else {
      throw DataError.badHeader(path: path, reason: "no \"path\" column in \(header)")
    }
    let columns = labelColumns ?? header.filter { $0 != "path" }
    let indices = try columns.map { name -> Int in
      guard let i = header.firstIndex(of: name) else {
        throw DataError.badHeader(path: path, reason: "no \"\(name)\" column in \(header)")
      }
      return i
    }
    let body = Array(rows.dropFirst())
    for (r, row) in body.enumerated() where row.count != header.count {
      throw DataError.badHeader(path: path, reason: "row \(r + 2) has \(row.count) fields, header has \(header.count)")
    }
    let base = (path as NSString).deletingLastPathComponent
    var names: [String] = []
    var classes: [[String]] = []
    var labels = [[Int]](repeating: [], count: body.count)
    for (name, col) in zip(columns, indices) {
      if multiLabelColumns.contains(name) {
        let tagLists = body.map { $0[col].split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let tags = Set(tagLists.joined()).sorted()
        for tag in tags {
          names.append("\(name):\(tag)")
          classes.append(["0", "1"])
          for r in 0..<body.count { labels[r].append(tagLists[r].contains(tag) ? 1 : 0) }
        }
      } else {
        let values = body.map { $0[col] }
        let distinct = Array(Set(values))
        let sorted = distinct.allSatisfy({ Int($0) != nil })
          ? distinct.sorted { Int($0)! < Int($1)! } : distinct.sorted()
        let index = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1, $0) })
        names.append(name)
        classes.append(sorted)
        for r in 0..<body.count { labels[r].append(index[values[r]]!) }
      }
    }
    let entries = body.enumerated().map { r, row -> Entry in
      let p = row[pathColumn]
      return Entry(path: p.hasPrefix("/") ? p : "\(base)/\(p)", labels: labels[r])
    }
    return try AudioFileDataset(
      entries: entries, sampleRate: sampleRate, labelNames: names, classNames: classes, onBadFile: onBadFile)
  }

  /// MagnaTagATune's `annotations_final.csv`: tab-separated, quoted fields; columns
  /// `clip_id`, 188 tag columns of 0/1, `mp3_path` (relative to `audioRoot`). Keeps the
  /// `topTags` most frequent tags (50 is the usual benchmark; nil keeps all), one 0/1 slot
  /// each, named by the tag.
  public static func magnaTagATune(
    annotations path: String, audioRoot: String, sampleRate: Int, topTags: Int? = 50,
    onBadFile: BadFilePolicy = .fail
  ) throws -> AudioFileDataset {
    let rows = try CSV.read(path, separator: "\t")
    guard let header = rows.first, header.first == "clip_id", header.last == "mp3_path", header.count >= 3 else {
      throw DataError.badHeader(path: path, reason: "expected clip_id, tag columns, mp3_path")
    }
    let body = rows.dropFirst().filter { $0.count == header.count }
    let tagRange = 1..<(header.count - 1)
    var counts = [Int](repeating: 0, count: header.count)
    for row in body { for t in tagRange where row[t] == "1" { counts[t] += 1 } }
    var tags = Array(tagRange)
    if let k = topTags {
      tags = tags.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.prefix(k).sorted()
    }
    let entries = body.map { row in
      Entry(path: "\(audioRoot)/\(row[header.count - 1])", labels: tags.map { row[$0] == "1" ? 1 : 0 })
    }
    return try AudioFileDataset(
      entries: entries, sampleRate: sampleRate, labelNames: tags.map { header[$0] },
      classNames: tags.map { _ in ["0", "1"] }, onBadFile: onBadFile)
  }
}

/// A small CSV/TSV reader: fields may be double-quoted (with `""` for a quote inside);
/// blank lines are skipped.
enum CSV {
  static func read(_ path: String, separator: Character) throws -> [[String]] {
    guard FileManager.default.fileExists(atPath: path) else { throw DataError.fileNotFound(path: path, hint: nil) }
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
      throw DataError.io(path: path, operation: "read", reason: "\(error)")
    }
    return parse(text, separator: separator)
  }

  static func parse(_ text: String, separator: Character) -> [[String]] {
    var rows: [[String]] = []
    var row: [String] = []
    var field = ""
    var quoted = false
    var chars = text.makeIterator()
    var pending: Character? = nil
    func endRow() {
      row.append(field)
      field = ""
      if !(row.count == 1 && row[0].isEmpty) { rows.append(row) }
      row = []
    }
    while let c = pending ?? chars.next() {
      pending = nil
      if quoted {
        if c == "\"" {
          if let n = chars.next() {
            if n == "\"" { field.append("\"") } else { quoted = false; pending = n }
          } else { quoted = false }
        } else { field.append(c) }
      } else if c == "\"" && field.isEmpty {
        quoted = true
      } else if c == separator {
        row.append(field)
        field = ""
      } else if c == "\n" || c == "\r\n" {
        endRow()
      } else if c != "\r" {
        field.append(c)
      }
    }
    if !field.isEmpty || !row.isEmpty { endRow() }
    return rows
  }
}
