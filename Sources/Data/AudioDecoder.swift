import CSamplerate
import CSndFile

#if canImport(Glibc)
  import Glibc
#endif

/// A decoded clip: mono samples at `sampleRate`.
public struct AudioClip: Sendable {
  /// [L] mono samples, nominally in [-1, 1].
  public var samples: [Float]
  public var sampleRate: Int
  public init(samples: [Float], sampleRate: Int) {
    self.samples = samples
    self.sampleRate = sampleRate
  }
  /// Duration in seconds.
  public var duration: Double { Double(samples.count) / Double(sampleRate) }
}

/// Decodes audio files with libsndfile (WAV, FLAC, OGG/Vorbis, Opus, and MP3 when the
/// library is built with mpg123, as Debian 12's 1.2.0 is) to mono `Float`, averaging the
/// channels, and resamples with libsamplerate (`src_simple`, `SRC_SINC_MEDIUM_QUALITY`).
public enum AudioDecoder {
  /// The file's sample rate, channel count and frame count (from the header; MP3 frame
  /// counts are estimates).
  public struct Info: Sendable, Equatable {
    public var sampleRate: Int
    public var channels: Int
    public var frames: Int
  }

  /// Opens `path` and reads its header only: cheap, and enough to reject corrupt or empty
  /// files before training starts.
  public static func info(_ path: String) throws -> Info {
    try withFile(path) { _, info in
      Info(sampleRate: Int(info.samplerate), channels: Int(info.channels), frames: Int(info.frames))
    }
  }

  /// Decodes `path` to mono at its own sample rate.
  /// - Throws: `AudioError` naming the file if it cannot be opened or decoded, or holds no
  ///   samples.
  public static func decode(_ path: String) throws -> AudioClip {
    try withFile(path) { file, info in
      let channels = Int(info.channels)
      var mono: [Float] = []
      // The header's frame count is a hint from the file: reserve at most 16 Mi samples on
      // its word (a corrupt header may claim 2^62); the array grows with what is decoded.
      mono.reserveCapacity(min(max(0, Int(info.frames)), 1 << 24))
      let chunkFrames = 8192
      var buffer = [Float](repeating: 0, count: chunkFrames * channels)
      while true {
        let got = buffer.withUnsafeMutableBufferPointer {
          Int(sf_readf_float(file, $0.baseAddress!, sf_count_t(chunkFrames)))
        }
        if got <= 0 { break }
        if channels == 1 {
          mono.append(contentsOf: buffer[0..<got])
        } else {
          let scale = 1 / Float(channels)
          for f in 0..<got {
            var acc: Float = 0
            for c in 0..<channels { acc += buffer[f * channels + c] }
            mono.append(acc * scale)
          }
        }
      }
      let err = sf_error(file)
      if err != 0 {
        throw AudioError.undecodable(path: path, reason: String(cString: sf_error_number(err)))
      }
      guard !mono.isEmpty else { throw AudioError.empty(path: path) }
      return AudioClip(samples: mono, sampleRate: Int(info.samplerate))
    }
  }

  /// Decodes `path` to mono at `sampleRate` (resampled if the file's rate differs).
  public static func decode(_ path: String, sampleRate: Int) throws -> AudioClip {
    let clip = try decode(path)
    if clip.sampleRate == sampleRate { return clip }
    do {
      return AudioClip(
        samples: try resample(clip.samples, from: clip.sampleRate, to: sampleRate),
        sampleRate: sampleRate)
    } catch let AudioError.resample(_, reason) {
      throw AudioError.resample(path: path, reason: reason)
    }
  }

  /// Resamples mono `x` from `from` Hz to `to` Hz with libsamplerate's medium-quality sinc
  /// converter (`src_simple`). The output has `round(count·to/from)` samples.
  public static func resample(_ x: [Float], from: Int, to: Int) throws -> [Float] {
    precondition(from > 0 && to > 0, "sample rates must be positive")
    if from == to || x.isEmpty { return x }
    let ratio = Double(to) / Double(from)
    let outCount = Int((Double(x.count) * ratio).rounded())
    var out = [Float](repeating: 0, count: outCount + 16)
    var status: Int32 = 0
    var generated = 0
    x.withUnsafeBufferPointer { src in
      out.withUnsafeMutableBufferPointer { dst in
        var data = SRC_DATA()
        data.data_in = src.baseAddress
        data.input_frames = Int(x.count)
        data.data_out = dst.baseAddress
        data.output_frames = Int(dst.count)
        data.src_ratio = ratio
        status = src_simple(&data, Int32(SRC_SINC_MEDIUM_QUALITY), 1)
        generated = data.output_frames_gen
      }
    }
    if status != 0 {
      throw AudioError.resample(path: "<memory>", reason: String(cString: src_strerror(status)))
    }
    out.removeLast(out.count - min(out.count, generated))
    if out.count < outCount { out.append(contentsOf: repeatElement(0, count: outCount - out.count)) }
    if out.count > outCount { out.removeLast(out.count - outCount) }
    return out
  }

  /// Writes mono `samples` as a 16-bit PCM WAV (or FLAC/OGG, by `format`) file. For tests
  /// and the corpus tools; clips to [-1, 1].
  public static func write(
    _ samples: [Float], sampleRate: Int, to path: String, format: Int32 = Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
  ) throws {
    var info = SF_INFO()
    info.samplerate = Int32(sampleRate)
    info.channels = 1
    info.format = format
    guard let file = sf_open(path, Int32(SFM_WRITE), &info) else {
      throw AudioError.undecodable(path: path, reason: String(cString: sf_strerror(nil)))
    }
    defer { sf_close(file) }
    let written = samples.withUnsafeBufferPointer {
      sf_writef_float(file, $0.baseAddress!, sf_count_t(samples.count))
    }
    if written != samples.count {
      throw AudioError.undecodable(path: path, reason: String(cString: sf_strerror(file)))
    }
  }

  /// The major formats this libsndfile reads, as (extension, name) pairs.
  public static func supportedFormats() -> [(String, String)] {
    var count: Int32 = 0
    sf_command(nil, Int32(SFC_GET_FORMAT_MAJOR_COUNT), &count, Int32(MemoryLayout<Int32>.size))
    var result: [(String, String)] = []
    for i in 0..<count {
      var f = SF_FORMAT_INFO()
      f.format = i
      sf_command(nil, Int32(SFC_GET_FORMAT_MAJOR), &f, Int32(MemoryLayout<SF_FORMAT_INFO>.size))
      result.append((String(cString: f.extension), String(cString: f.name)))
    }
    return result
  }

  private static func withFile<T>(_ path: String, _ body: (OpaquePointer, SF_INFO) throws -> T) throws -> T {
    var st = stat()
    if stat(path, &st) != 0 {
      if errno == ENOENT { throw DataError.fileNotFound(path: path, hint: nil) }
      throw DataError.io(path: path, operation: "stat", reason: String(cString: strerror(errno)))
    }
    if st.st_size == 0 { throw AudioError.empty(path: path) }
    var info = SF_INFO()
    guard let file = sf_open(path, Int32(SFM_READ), &info) else {
      throw AudioError.undecodable(path: path, reason: String(cString: sf_strerror(nil)))
    }
    defer { sf_close(file) }
    guard info.channels > 0, info.samplerate > 0 else {
      throw AudioError.undecodable(path: path, reason: "header has \(info.channels) channels at \(info.samplerate) Hz")
    }
    return try body(file, info)
  }
}
