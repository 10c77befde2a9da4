import Foundation
import XCTest

@testable import Data

/// A small spoken-digit corpus made once for the audio dataset tests.
enum TinyCorpus {
  static let spec = SpokenDigits(languages: ["en", "de"], voices: ["m1", "f2"], speeds: [175], pitches: [40, 60])
  static let directory: String = {
    do {
      let dir = try TestSupport.makeTempDirectory()
      try spec.generate(into: dir, jobs: 2)
      return dir
    } catch { fatalError("cannot make the spoken-digit corpus: \(error)") }
  }()
}

final class AudioDatasetTests: XCTestCase {
  func testSpokenDigitsManifestAndLabels() throws {
    let ds = try AudioFileDataset.manifest(csv: "\(TinyCorpus.directory)/manifest.csv", sampleRate: 16000)
    XCTAssertEqual(ds.count, 40)
    XCTAssertEqual(ds.labelNames, ["word", "language", "voice", "gender", "speed", "pitch"])
    XCTAssertEqual(ds.classNames[0], (0..<10).map(String.init))
    XCTAssertEqual(ds.classNames[1], ["de", "en"])
    XCTAssertEqual(ds.classNames[3], ["female", "male"])
    XCTAssertEqual(ds.classNames[5], ["40", "60"])  // numeric sort
    // Row 0 is English, m1, digit 0.
    XCTAssertEqual(ds.labels(0), [0, 1, 1, 1, 0, 0])
    XCTAssertEqual(ds.label(17, slot: 0), 7)
    let clip = try ds.samples(3)
    XCTAssertGreaterThan(clip.count, 3000)  // a spoken word is at least 0.2 s
    XCTAssertGreaterThan(AudioTestSupport.rms(clip, 0..<clip.count), 0.01)
    XCTAssertEqual(SpokenDigits().clips.count, 2000)
    XCTAssertEqual(Set(SpokenDigits().clips.map(\.language)).count, 10)
    XCTAssertThrowsError(try SpokenDigits(voices: ["robot"]).validate())
  }

  func testManifestMultiLabelColumnAndErrors() throws {
    let dir = try TestSupport.makeTempDirectory()
    try AudioDecoder.write([0.1, 0.2, 0.3], sampleRate: 8000, to: "\(dir)/a.wav")
    try AudioDecoder.write([0.1, -0.2], sampleRate: 8000, to: "\(dir)/b.wav")
    try "path,genre,tags\na.wav,rock,\"guitar;loud\"\nb.wav,jazz,piano\n".write(toFile: "\(dir)/m.csv", atomically: true, encoding: .utf8)
    let ds = try AudioFileDataset.manifest(csv: "\(dir)/m.csv", sampleRate: 8000, multiLabelColumns: ["tags"])
    XCTAssertEqual(ds.labelNames, ["genre", "tags:guitar", "tags:loud", "tags:piano"])
    XCTAssertEqual(ds.labels(0), [1, 1, 1, 0])
    XCTAssertEqual(ds.labels(1), [0, 0, 0, 1])
    try "file,genre\na.wav,rock\n".write(toFile: "\(dir)/bad.csv", atomically: true, encoding: .utf8)
    TestSupport.assertThrowsDataError(["bad.csv", "path"]) {
      _ = try AudioFileDataset.manifest(csv: "\(dir)/bad.csv", sampleRate: 8000)
    }
  }

  /// MagnaTagATune's layout: tab-separated quoted fields, clip_id, tag columns, mp3_path;
  /// the top-k tags by count become 0/1 slots.
  func testMagnaTagATuneLayout() throws {
    let dir = try TestSupport.makeTempDirectory()
    try FileManager.default.createDirectory(atPath: "\(dir)/0", withIntermediateDirectories: true)
    for k in 0..<3 { try AudioDecoder.write([0.1, 0.2], sampleRate: 16000, to: "\(dir)/0/c\(k).wav") }
    let text = """
      "clip_id"\t"guitar"\t"classical"\t"slow"\t"mp3_path"
      "2"\t"1"\t"0"\t"1"\t"0/c0.wav"
      "6"\t"1"\t"1"\t"0"\t"0/c1.wav"
      "10"\t"0"\t"0"\t"1"\t"0/c2.wav"

      """
    try text.write(toFile: "\(dir)/annotations_final.csv", atomically: true, encoding: .utf8)
    let ds = try AudioFileDataset.magnaTagATune(annotations: "\(dir)/annotations_final.csv", audioRoot: dir, sampleRate: 16000, topTags: 2)
    XCTAssertEqual(ds.labelNames, ["guitar", "slow"])  // classical is the least frequent
    XCTAssertEqual(ds.count, 3)
    XCTAssertEqual(ds.labels(0), [1, 1])
    XCTAssertEqual(ds.labels(1), [1, 0])
    XCTAssertEqual(ds.labels(2), [0, 1])
  }

  /// Packing to a shard keeps labels and samples (to Int16 / Float16 precision) and the valid
  /// lengths; bad files are skipped and counted under `.skip`.
  func testPackRoundTrip() throws {
    let ds = try AudioFileDataset.manifest(csv: "\(TinyCorpus.directory)/manifest.csv", sampleRate: 16000)
    let dir = try TestSupport.makeTempDirectory()
    for encoding in AudioShardInfo.Encoding.allCases {
      let path = "\(dir)/digits-\(encoding).pxrs"
      let (written, skipped) = try AudioShardWriter.pack(ds, to: path, samples: 12000, encoding: encoding)
      XCTAssertEqual(written, 40)
      XCTAssertTrue(skipped.isEmpty)
      let shard = try AudioShardSource(path: path)
      XCTAssertEqual(shard.count, 40)
      XCTAssertEqual(shard.labelNames, ds.labelNames)
      XCTAssertEqual(shard.classNames, ds.classNames)
      for i in [0, 13, 39] {
        XCTAssertEqual(shard.labels(i), ds.labels(i))
        let original = try ds.samples(i)
        let packed = try shard.samples(i)
        let n = min(original.count, 12000)
        XCTAssertEqual(packed.count, n)
        let start = (original.count - n) / 2
        for k in stride(from: 0, to: n, by: 97) {
          XCTAssertEqual(packed[k], original[start + k], accuracy: encoding == .int16 ? 1.0 / 32767 : max(1e-3 * abs(original[start + k]), 1e-7))
        }
      }
    }
    // A file that went bad after the listing is skipped and counted.
    let list = try AudioFileDataset(
      entries: [.init(path: "\(TinyCorpus.directory)/en/en_m1_s175_p40_0.wav", labels: [0]), .init(path: "\(dir)/gone.wav", labels: [1])],
      sampleRate: 16000, labelNames: ["x"], classNames: [["a", "b"]], probe: false)
    try TestSupport.write([], to: "\(dir)/gone.wav")
    XCTAssertThrowsError(try AudioShardWriter.pack(list, to: "\(dir)/x.pxrs", samples: 100)) {
      XCTAssertTrue("\($0)".contains("gone.wav"))
    }
    let (written, skipped) = try AudioShardWriter.pack(list, to: "\(dir)/x.pxrs", samples: 100, onBadFile: .skip)
    XCTAssertEqual(written, 1)
    XCTAssertEqual(skipped.map(\.path), ["\(dir)/gone.wav"])
  }

  /// The audio loader fills [2B, 1, 1, L] with views keyed by global sample index: the rows of
  /// two ranks concatenated equal one rank's rows, and transform labels come with them.
  func testLoaderViewsAreRankInvariant() throws {
    let ds = try AudioFileDataset.manifest(csv: "\(TinyCorpus.directory)/manifest.csv", sampleRate: 16000)
    let L = 4000
    func load(rank: Int, world: Int) throws -> ([Float], [WaveTransformSet]) {
      let sampler = try DistributedSampler(count: ds.count, globalBatch: 4, rank: rank, worldSize: world, seed: 5)
      let loader = try AudioContrastiveLoader(
        source: ds, sampler: sampler, augment: WaveAugment(config: .clmr, sampleRate: 16000, length: L), seed: 5)
      var x = [Float](repeating: .nan, count: loader.floatsPerBatch)
      var t = [Float](repeating: .nan, count: loader.rows * AudioContrastiveLoader.transformCount)
      try loader.load(epoch: 1, batch: 2, into: &x, transforms: &t)
      XCTAssertTrue(x.allSatisfy { $0.isFinite })
      XCTAssertTrue(t.allSatisfy { $0 == 0 || $0 == 1 })
      XCTAssertEqual(loader.lastTransforms.map(\.multiHot), (0..<loader.rows).map { Array(t[$0 * 14..<($0 + 1) * 14]) })
      return (x, loader.lastTransforms)
    }
    let (one, t1) = try load(rank: 0, world: 1)
    let (a, ta) = try load(rank: 0, world: 2)
    let (b, tb) = try load(rank: 1, world: 2)
    // Rank r holds rows [view1 of its 2 samples, view2 of its 2 samples].
    let v1 = Array(one[0..<(4 * L)]), v2 = Array(one[(4 * L)...])
    XCTAssertEqual(Array(a[0..<(2 * L)]) + Array(b[0..<(2 * L)]), v1)
    XCTAssertEqual(Array(a[(2 * L)...]) + Array(b[(2 * L)...]), v2)
    XCTAssertEqual(Array(ta[0..<2]) + Array(tb[0..<2]), Array(t1[0..<4]))
    XCTAssertNotEqual(Array(one[0..<L]), Array(one[(4 * L)..<(5 * L)]), "the two views differ")
  }
}
