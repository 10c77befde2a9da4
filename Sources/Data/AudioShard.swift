import Foundation

/// Fixed-length audio clips in a record shard, for fast per-rank reads.
///
/// The shard is an ordinary `RecordShard` whose payload is `2·L` bytes per clip: `L` samples
/// as little-endian Int16 (`x·32767`, clipped) or IEEE Float16; its header describes it as
/// `1 × 1 × 2L` bytes, and the `K` label bytes are the clip's label slots. A JSON sidecar
/// `<shard>.json` (`AudioShardInfo`) records the encoding, sample rate, `L`, the label names,
/// the class names and each clip's valid length (clips shorter than `L` are zero-padded at
/// the end; longer ones keep their centre `L` samples).
public struct AudioShardInfo: Codable, Equatable, Sendable {
  public enum Encoding: String, Codable, Sendable, CaseIterable {
    case int16, float16
  }
  public var kind = "parallax-audio-shard"
  public var encoding: Encoding
  public var sampleRate: Int
  /// Samples per record `L`.
  public var samples: Int
  public var labelNames: [String]
  public var classNames: [[String]]
  /// Valid samples of each clip (≤ L).
  public var lengths: [Int]

  /// The sidecar path of a shard.
  public static func path(forShard shard: String) -> String { shard + ".json" }
}

/// Packs clips into an audio shard (`AudioShardInfo`).
public final class AudioShardWriter {
  public private(set) var info: AudioShardInfo
  public let path: String
  private let writer: RecordShardWriter
  private var payload: [UInt8]

  public init(
    path: String, samples: Int, sampleRate: Int, encoding: AudioShardInfo.Encoding,
    labelNames: [String], classNames: [[String]]
  ) throws {
    guard samples > 0 else { throw DataError.invalidArgument("\(path): clip length \(samples) must be positive") }
    for (name, classes) in zip(labelNames, classNames) where classes.count > 256 {
      throw DataError.invalidArgument("\(path): label \(name) has \(classes.count) classes; a shard label byte holds 256")
    }
    self.path = path
    info = AudioShardInfo(
      encoding: encoding, sampleRate: sampleRate, samples: samples, labelNames: labelNames,
      classNames: classNames, lengths: [])
    writer = try RecordShardWriter(path: path, channels: 1, height: 1, width: 2 * samples, labelCount: labelNames.count)
    payload = [UInt8](repeating: 0, count: 2 * samples)
  }

  /// Appends one clip (centre `L` samples, or zero-padded at the end) with its labels.
  public func append(_ clip: [Float], labels: [Int]) throws {
    let L = info.samples
    let n = min(L, clip.count)
    let start = (clip.count - n) / 2
    for i in 0..<L {
      let v: Float = i < n ? clip[start + i] : 0
      let bits: UInt16
      switch info.encoding {
      case .int16: bits = UInt16(bitPattern: Int16((max(-1, min(1, v)) * 32767).rounded()))
      case .float16: bits = Float16(v).bitPattern
      }
      payload[2 * i] = UInt8(truncatingIfNeeded: bits)
      payload[2 * i + 1] = UInt8(truncatingIfNeeded: bits >> 8)
    }
    let bytes = try labels.map { l -> UInt8 in
      guard l >= 0 && l < 256 else { throw DataError.invalidArgument("\(path): label \(l) does not fit in a byte") }
      return UInt8(l)
    }
    try writer.append(labels: bytes, payload: payload)
    info.lengths.append(n)
  }

  /// Finishes the shard (atomic rename) and writes the sidecar (atomic too).
  public func finish() throws {
    try writer.finish()
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(info)
    let sidecar = AudioShardInfo.path(forShard: path)
    do { try data.write(to: URL(fileURLWithPath: sidecar), options: .atomic) } catch {
      throw DataError.io(path: sidecar, operation: "write", reason: "\(error)")
    }
  }

  /// Decodes every clip of `source` and packs it into a shard at `path`. Under `.skip`, a clip
  /// that fails to decode is left out and counted.
  /// - Returns: the clips written and the errors of those skipped.
  @discardableResult
  public static func pack(
    _ source: AudioSource, to path: String, samples: Int, encoding: AudioShardInfo.Encoding = .int16,
    onBadFile: BadFilePolicy = .fail, progress: ((Int) -> Void)? = nil
  ) throws -> (written: Int, skipped: [AudioError]) {
    let writer = try AudioShardWriter(
      path: path, samples: samples, sampleRate: source.sampleRate, encoding: encoding,
      labelNames: source.labelNames, classNames: source.classNames)
    var skipped: [AudioError] = []
    for i in 0..<source.count {
      let clip: [Float]
      do { clip = try source.samples(i) } catch let e as AudioError {
        if onBadFile == .fail { throw e }
        skipped.append(e)
        continue
      }
      try writer.append(clip, labels: source.labels(i))
      progress?(i + 1)
    }
    try writer.finish()
    return (writer.info.lengths.count, skipped)
  }
}

/// Reads an audio shard: labels from memory, each clip with one `pread`.
public final class AudioShardSource: AudioSource {
  public let shard: RecordShard
  public let info: AudioShardInfo

  public var count: Int { shard.count }
  public var sampleRate: Int { info.sampleRate }
  public var labelNames: [String] { info.labelNames }
  public var classNames: [[String]] { info.classNames }

  /// - Throws: `DataError` naming the shard or its sidecar if either is missing or they
  ///   disagree.
  public init(path: String) throws {
    shard = try RecordShard(path: path)
    let sidecar = AudioShardInfo.path(forShard: path)
    guard FileManager.default.fileExists(atPath: sidecar) else {
      throw DataError.fileNotFound(path: sidecar, hint: "an audio shard needs its JSON sidecar; repack with `parallax data pack`")
    }
    do {
      info = try JSONDecoder().decode(AudioShardInfo.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: sidecar)))
    } catch {
      throw DataError.badHeader(path: sidecar, reason: "\(error)")
    }
    guard info.kind == "parallax-audio-shard", info.samples > 0, info.sampleRate > 0 else {
      throw DataError.badHeader(
        path: sidecar, reason: "kind \(info.kind), \(info.samples) samples at \(info.sampleRate) Hz: not a valid audio-shard sidecar")
    }
    guard info.classNames.count == info.labelNames.count else {
      throw DataError.badHeader(path: sidecar, reason: "\(info.labelNames.count) label names but \(info.classNames.count) class lists")
    }
    if let i = info.lengths.firstIndex(where: { $0 < 0 || $0 > info.samples }) {
      throw DataError.badHeader(path: sidecar, reason: "clip \(i) has length \(info.lengths[i]), outside 0…\(info.samples)")
    }
    guard info.samples <= Int.max / 2, shard.header.payloadSize == 2 * info.samples, shard.labelCount == info.labelNames.count,
      info.lengths.count == shard.count
    else {
      throw DataError.badHeader(
        path: path,
        reason: "shard holds \(shard.count) records of \(shard.header.payloadSize) bytes with \(shard.labelCount) labels; sidecar says \(info.lengths.count) clips of \(info.samples) samples with \(info.labelNames.count) labels")
    }
  }

  public func label(_ i: Int, slot: Int) -> Int { shard.label(i, slot: slot) }

  /// Clip `i`'s valid samples.
  public func samples(_ i: Int) throws -> [Float] {
    let L = info.samples
    var bytes = [UInt8](repeating: 0, count: 2 * L)
    try bytes.withUnsafeMutableBufferPointer { try shard.readPayload(index: i, into: $0.baseAddress!) }
    let n = info.lengths[i]
    var out = [Float](repeating: 0, count: n)
    for k in 0..<n {
      let bits = UInt16(bytes[2 * k]) | UInt16(bytes[2 * k + 1]) << 8
      switch info.encoding {
      case .int16: out[k] = Float(Int16(bitPattern: bits)) / 32767
      case .float16: out[k] = Float(Float16(bitPattern: bits))
      }
    }
    return out
  }
}
