import Foundation
import XCTest

@testable import Data
@testable import Model
@testable import Train

/// Seeded mutation fuzzing of every parser of outside data (issue 13 §3). Each target starts
/// from a real file — written by Parallax's own writers here, or Debian's Fashion-MNIST — and
/// decodes `iterations` mutants of it: flipped and overwritten bytes, truncations, inserted
/// runs, and (the dangerous ones) header integers replaced by extremes (0, 2^31, 2^62, 2^64−1,
/// negative, non-integral). Each mutant must decode or throw an error that names the file; a
/// trap or an unbounded allocation kills the test process, which is the failure.
///
/// `PARALLAX_FUZZ_ITERATIONS` raises the count for a longer run (`scripts/fuzz.sh`); the
/// default keeps the whole set to seconds in debug.
final class FuzzTests: XCTestCase {
  static let iterations = Int(ProcessInfo.processInfo.environment["PARALLAX_FUZZ_ITERATIONS"] ?? "") ?? 1000
  static let baseSeed = UInt64(ProcessInfo.processInfo.environment["PARALLAX_FUZZ_SEED"] ?? "") ?? 13

  /// SplitMix64: a seeded, reproducible stream for the mutator.
  struct Mutator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

    static let extremes: [UInt64] = [0, 1, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 62, .max, 1 << 40]
    static let textExtremes = [
      "0", "-1", "4611686018427387904", "18446744073709551616", "9223372036854775807", "-9223372036854775808",
      "1e308", "2.5", "NaN", "99999999999999999999999", "2147483648", "\"x\"", "[]", "{}", "null",
    ]

    /// One mutant of `seed`. `fields` are (offset, width) of little-endian header integers
    /// worth hitting with extremes; text formats get their digit runs replaced.
    mutating func mutate(_ seed: [UInt8], fields: [(Int, Int)], text: Bool) -> [UInt8] {
      var b = seed
      let rounds = 1 + below(3)
      for _ in 0..<rounds {
        // Text formats replace a number in half the rounds: header integers are where
        // overflows and huge allocations hide.
        switch text && below(2) == 0 ? 6 : below(6) {
        case 0 where !b.isEmpty: b[below(b.count)] ^= UInt8(1 << below(8))
        case 1 where !b.isEmpty: b[below(b.count)] = UInt8(truncatingIfNeeded: next())
        case 2: b = Array(b.prefix(below(b.count + 1)))
        case 3:
          let at = below(b.count + 1)
          let run = (0..<(1 + below(16))).map { _ in UInt8(truncatingIfNeeded: next()) }
          b.insert(contentsOf: run, at: at)
        case 4 where !fields.isEmpty:
          let (offset, width) = fields[below(fields.count)]
          var v = Self.extremes[below(Self.extremes.count)]
          if below(4) == 0 { v = next() }
          for k in 0..<width where offset + k < b.count { b[offset + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        case 5 where b.count > 1:
          // Duplicate a slice (grows a field or a table).
          let start = below(b.count), len = 1 + below(min(64, b.count - start))
          b.insert(contentsOf: b[start..<(start + len)], at: below(b.count + 1))
        case 6:
          // Replace a run of digits (a JSON/YAML/CSV number) with an extreme.
          let digits = b.indices.filter { b[$0] >= 0x30 && b[$0] <= 0x39 }
          guard let at = digits.isEmpty ? nil : digits[below(digits.count)] else { continue }
          var start = at, end = at
          while start > 0, b[start - 1] >= 0x30 && b[start - 1] <= 0x39 || b[start - 1] == 0x2D { start -= 1 }
          while end < b.count, b[end] >= 0x30 && b[end] <= 0x39 { end += 1 }
          b.replaceSubrange(start..<end, with: Array(Self.textExtremes[below(Self.textExtremes.count)].utf8))
        default: break
        }
      }
      return b
    }
  }

  struct Tally: CustomStringConvertible {
    var tried = 0, decoded = 0, threw = 0
    var description: String { "\(tried) inputs: \(decoded) decoded, \(threw) refused" }
  }

  /// Runs `body` on `iterations` mutants; every thrown error must name `path`.
  @discardableResult
  func fuzz(
    _ name: String, seed: [UInt8], fields: [(Int, Int)] = [], text: Bool = false, path: String,
    iterations: Int = FuzzTests.iterations, _ body: ([UInt8]) throws -> Void,
    file: StaticString = #filePath, line: UInt = #line
  ) -> Tally {
    var m = Mutator(state: Self.baseSeed ^ name.utf8.reduce(UInt64(0)) { $0 &* 31 &+ UInt64($1) })
    var tally = Tally()
    // The unmutated seed must decode: otherwise the fuzzer only tests the first check.
    XCTAssertNoThrow(try body(seed), "\(name): the seed itself must decode", file: file, line: line)
    for _ in 0..<iterations {
      let input = m.mutate(seed, fields: fields, text: text)
      tally.tried += 1
      do {
        try body(input)
        tally.decoded += 1
      } catch {
        tally.threw += 1
        let said = "\(error)"
        // The file itself, or (for a manifest, a sidecar or state.json) the file it refers
        // to in the same directory.
        let named = said.contains((path as NSString).lastPathComponent) || said.contains((path as NSString).deletingLastPathComponent)
        XCTAssertTrue(named, "\(name): error does not name the file: \(said)", file: file, line: line)
      }
    }
    print("fuzz \(name): \(tally)")
    return tally
  }

  lazy var dir = Processes.temporaryDirectory("fuzz")

  func write(_ bytes: [UInt8], _ path: String) {
    FileManager.default.createFile(atPath: path, contents: Foundation.Data(bytes))
  }

  /// Header integer fields (offset, 8) of a safetensors file: the length prefix and every
  /// number in the JSON header is hit by the digit-run mutation.
  func testSafeTensors() throws {
    let data = SafeTensors.encode(
      [
        .init(name: "encoder.0.weight", shape: [4, 1, 3, 3], values: (0..<36).map { Float($0) / 7 }),
        .init(name: "encoder.1.running_var", shape: [4], values: [1, 2, 3, 4]),
        .init(name: "scalar", shape: [], values: [5]),
      ], metadata: ["format": "pt"])
    let path = "fuzz-model.safetensors"
    fuzz("safetensors", seed: Array(data), fields: [(0, 8)], text: true, path: path) { b in
      let (entries, _) = try SafeTensors.decode(Foundation.Data(b), path: path)
      for e in entries.values { XCTAssertEqual(e.shape.reduce(1, *), e.values.count) }
    }
  }

  /// The case exactly: a dimension of 2^62 throws, naming the file.
  func testSafeTensorsHugeDimensionThrows() throws {
    for dims in ["[4611686018427387904]", "[4294967296,4294967296]", "[-1]", "[2.5]", "[1e300]"] {
      let header = "{\"t\":{\"dtype\":\"F32\",\"shape\":\(dims),\"data_offsets\":[0,4]}}"
      var b = [UInt8](repeating: 0, count: 8)
      let n = UInt64(header.utf8.count)
      for k in 0..<8 { b[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
      b += Array(header.utf8) + [0, 0, 0x80, 0x3F]
      XCTAssertThrowsError(try SafeTensors.decode(Foundation.Data(b), path: "huge.safetensors"), dims) {
        XCTAssertTrue("\($0)".contains("huge.safetensors"), "\($0)")
      }
    }
  }

  static let fashion = "/usr/share/datasets/fashion-mnist"

  func testIDXAndGzip() throws {
    let labelsGz = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fashion + "/t10k-labels-idx1-ubyte.gz")))
    fuzz("gzip (Fashion-MNIST labels .gz)", seed: labelsGz, fields: [(labelsGz.count - 4, 4), (4, 4)], path: "fuzz-labels.gz", iterations: Self.iterations / 5) { b in
      _ = try IDXFile.parse(try Gzip.inflateGzip(b, path: "fuzz-labels.gz"), path: "fuzz-labels.gz")
    }
    let labels = try Gzip.decompress(path: Self.fashion + "/t10k-labels-idx1-ubyte.gz")
    fuzz("IDX labels", seed: Array(labels.prefix(8 + 200)).withCount(200), fields: [(0, 4), (4, 4)], path: "fuzz-labels.idx") { b in
      _ = try IDXFile.parse(b, path: "fuzz-labels.idx")
    }
    let images = try Gzip.decompress(path: Self.fashion + "/t10k-images-idx3-ubyte.gz")
    var small = Array(images.prefix(16 + 2 * 784))
    small[4...7] = [0, 0, 0, 2]
    fuzz("IDX images", seed: small, fields: [(0, 4), (4, 4), (8, 4), (12, 4)], path: "fuzz-images.idx") { b in
      _ = try IDXFile.parse(b, path: "fuzz-images.idx")
    }
    // Big-endian extremes in the dimensions, directly.
    for dims: [UInt8] in [[0xFF, 0xFF, 0xFF, 0xFF], [0x40, 0, 0, 0], [0x80, 0, 0, 0]] {
      var b = small
      b.replaceSubrange(8..<12, with: dims)
      b.replaceSubrange(12..<16, with: dims)
      XCTAssertThrowsError(try IDXFile.parse(b, path: "dims.idx"))
    }
  }

  func testRecordShard() throws {
    let path = dir + "/seed.pxrs"
    let w = try RecordShardWriter(path: path, channels: 1, height: 3, width: 4, labelCount: 2)
    for r in 0..<5 { try w.append(labels: [UInt8(r), UInt8(9 - r)], payload: (0..<12).map { UInt8($0 * r % 256) }) }
    try w.finish()
    let seed = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
    let target = dir + "/fuzz.pxrs"
    let fields = [(4, 4), (8, 8), (16, 8), (24, 4), (28, 4), (32, 4), (36, 4), (40, 4)]
    fuzz("record shard", seed: seed, fields: fields, path: target) { b in
      write(b, target)
      let shard = try RecordShard(path: target)
      var buf = [UInt8](repeating: 0, count: shard.recordSize)
      for i in 0..<min(shard.count, 64) {
        try buf.withUnsafeMutableBufferPointer { try shard.read(index: i, into: $0.baseAddress!) }
        for s in 0..<shard.labelCount { _ = shard.label(i, slot: s) }
      }
    }
  }

  func testAudioShardSidecar() throws {
    let path = dir + "/clips.pxrs"
    let writer = try AudioShardWriter(
      path: path, samples: 64, sampleRate: 8000, encoding: .int16, labelNames: ["word"], classNames: [["a", "b"]])
    for c in 0..<4 { try writer.append((0..<(40 + 8 * c)).map { sinf(Float($0 * (c + 1)) / 5) }, labels: [c % 2]) }
    try writer.finish()
    let sidecar = AudioShardInfo.path(forShard: path)
    let seed = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: sidecar)))
    fuzz("audio-shard sidecar", seed: seed, text: true, path: sidecar) { b in
      write(b, sidecar)
      let source = try AudioShardSource(path: path)
      for i in 0..<source.count { _ = try source.samples(i) }
    }
  }

  /// A one-layer checkpoint: `state.json` mutated as text; `model.safetensors` mutated with
  /// `state.json`'s sha256 and size updated to match (the hash check cannot help).
  func testCheckpointStateAndModel() throws {
    let arena = ParameterArena()
    _ = Linear(arena: arena, name: "encoder.0", inFeatures: 3, outFeatures: 2, bias: true)
    arena.allocate(seed: 1)
    var config = PretrainConfig()
    config.maxSteps = 1
    let state = CheckpointState(config: config, step: 1, epoch: 0, batchInEpoch: 1, worldSize: 1, seed: 5)
    let run = dir + "/run"
    let ckpt = try Checkpoint.write(runDir: run, arena: arena, optimizerState: [], state: state, keep: 2)
    let statePath = ckpt + "/state.json"
    let stateSeed = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: statePath)))
    fuzz("state.json", seed: stateSeed, text: true, path: statePath) { b in
      write(b, statePath)
      let loaded = try Checkpoint.load(ckpt)
      try Checkpoint.restore(arena, from: loaded.model, path: ckpt)
    }
    write(stateSeed, statePath)
    let modelPath = ckpt + "/model.safetensors"
    let modelSeed = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: modelPath)))
    let stateObject = try JSONSerialization.jsonObject(with: Foundation.Data(stateSeed)) as! [String: Any]
    fuzz("checkpoint model.safetensors (hash updated)", seed: modelSeed, fields: [(0, 8)], text: true, path: modelPath) { b in
      write(b, modelPath)
      var s = stateObject
      var files = s["files"] as! [String: String], sizes = s["sizes"] as! [String: Int]
      files["model.safetensors"] = SHA256.hex(Foundation.Data(b))
      sizes["model.safetensors"] = b.count
      s["files"] = files
      s["sizes"] = sizes
      try JSONSerialization.data(withJSONObject: s).write(to: URL(fileURLWithPath: statePath))
      let loaded = try Checkpoint.load(ckpt)
      try Checkpoint.restore(arena, from: loaded.model, path: modelPath)
    }
  }

  func testYAMLConfig() throws {
    let source = "configs/simclr-fmnist.yaml"
    let text = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path + "/" + source, encoding: .utf8)
    fuzz("YAML config (PretrainConfig.parse)", seed: Array(text.utf8), text: true, path: source) { b in
      guard let t = String(bytes: b, encoding: .utf8) else { throw DataError.badHeader(path: source, reason: "not UTF-8") }
      _ = try PretrainConfig.parse(yaml: t, source: source)
    }
  }

  func testCSVManifestAndWAV() throws {
    let wav = dir + "/a.wav"
    try AudioDecoder.write((0..<800).map { sinf(Float($0) / 9) * 0.5 }, sampleRate: 8000, to: wav)
    try AudioDecoder.write((0..<400).map { sinf(Float($0) / 3) * 0.5 }, sampleRate: 8000, to: dir + "/b.wav")
    let manifest = dir + "/manifest.csv"
    let csv = "path,word,language,tags\na.wav,1,fr,x;y\nb.wav,\"2\",es,y\n\"a.wav\",10,fr,\n"
    fuzz("CSV manifest", seed: Array(csv.utf8), text: true, path: manifest) { b in
      write(b, manifest)
      let d = try AudioFileDataset.manifest(csv: manifest, sampleRate: 8000, multiLabelColumns: ["tags"])
      for i in 0..<d.count { for s in 0..<d.labelNames.count { _ = d.label(i, slot: s) } }
    }
    // WAV through libsndfile: the RIFF sizes, channels, rate, block align and bits.
    let seed = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: wav)))
    let target = dir + "/fuzz.wav"
    let fields = [(4, 4), (16, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)]
    fuzz("WAV (libsndfile)", seed: seed, fields: fields, path: target) { b in
      write(b, target)
      _ = try AudioDecoder.decode(target, sampleRate: 16000)
    }
  }
}

extension Array where Element == UInt8 {
  /// An IDX label file cut to `n` labels (header count rewritten).
  fileprivate func withCount(_ n: Int) -> [UInt8] {
    var b = self
    b[4] = UInt8(n >> 24 & 0xFF); b[5] = UInt8(n >> 16 & 0xFF); b[6] = UInt8(n >> 8 & 0xFF); b[7] = UInt8(n & 0xFF)
    return b
  }
}
