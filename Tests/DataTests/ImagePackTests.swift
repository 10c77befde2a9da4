import Foundation
import XCTest

@testable import Data

/// Image folders → PNG/JPEG decode → record-shard parts → reads by offset (issue 18).
final class ImagePackTests: XCTestCase {
  /// A deterministic RGB test card: class-dependent gradients so each image differs.
  func card(width: Int, height: Int, seed: Int, channels: Int = 3) -> DecodedImage {
    var px = [UInt8](repeating: 0, count: width * height * channels)
    for y in 0..<height {
      for x in 0..<width {
        for c in 0..<channels {
          px[(y * width + x) * channels + c] = UInt8((x * 37 + y * 11 + c * 71 + seed * 53) % 256)
        }
      }
    }
    return DecodedImage(width: width, height: height, channels: channels, pixels: px)
  }

  /// Interleaved H×W×C to the shard's planar C×H×W.
  func planar(_ im: DecodedImage) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: im.pixels.count)
    for c in 0..<im.channels {
      for i in 0..<(im.width * im.height) { out[c * im.width * im.height + i] = im.pixels[i * im.channels + c] }
    }
    return out
  }

  func testPNGIsLosslessAndJPEGDecodesWhatItEncoded() throws {
    for channels in [1, 3] {
      let im = card(width: 9, height: 5, seed: 2, channels: channels)
      let png = try ImageFile.encodePNG(im)
      XCTAssertEqual(ImageFile.format(of: png), .png)
      XCTAssertEqual(try ImageFile.decode(png, channels: channels, path: "x.png"), im)
      let jpeg = try ImageFile.encodeJPEG(im, quality: 100)
      XCTAssertEqual(ImageFile.format(of: jpeg), .jpeg)
      let back = try ImageFile.decode(jpeg, channels: channels, path: "x.jpg")
      XCTAssertEqual([back.width, back.height, back.channels], [9, 5, channels])
      let worst = zip(back.pixels, im.pixels).map { abs(Int($0) - Int($1)) }.max()!
      XCTAssertLessThan(worst, 40, "quality-100 JPEG is close to its source")
      XCTAssertGreaterThan(zip(back.pixels, im.pixels).filter { $0 != $1 }.count, 0, "JPEG is lossy: the test card must show it")
    }
    // Gray to RGB replicates the channel; RGB to gray is luma.
    let gray = card(width: 4, height: 4, seed: 1, channels: 1)
    let rgb = try ImageFile.decode(try ImageFile.encodePNG(gray), channels: 3, path: "g.png")
    XCTAssertEqual(rgb.pixels, gray.pixels.flatMap { [$0, $0, $0] })
  }

  func testCorruptTruncatedAndHostileFilesAreErrorsNamingTheFile() throws {
    let png = try ImageFile.encodePNG(card(width: 16, height: 16, seed: 0))
    TestSupport.assertThrowsDataError(["half.png", "PNG"]) {
      _ = try ImageFile.decode(Array(png.prefix(png.count / 2)), channels: 3, path: "half.png")
    }
    TestSupport.assertThrowsDataError(["noise.png", "signature"]) {
      _ = try ImageFile.decode([1, 2, 3, 4, 5, 6, 7, 8, 9], channels: 3, path: "noise.png")
    }
    TestSupport.assertThrowsDataError(["empty.jpg", "empty"]) { _ = try ImageFile.decode([], channels: 1, path: "empty.jpg") }
    let jpeg = try ImageFile.encodeJPEG(card(width: 16, height: 16, seed: 0))
    TestSupport.assertThrowsDataError(["cut.jpg", "JPEG"]) {
      _ = try ImageFile.decode(Array(jpeg.prefix(jpeg.count - 40)), channels: 3, path: "cut.jpg")
    }
    // A PNG whose IHDR claims 2^30 × 2^30 pixels: refused before any allocation.
    var big = png
    for (o, v) in [(16, UInt8(0x40)), (17, 0), (18, 0), (19, 0), (20, 0x40), (21, 0), (22, 0), (23, 0)] { big[o] = v }
    TestSupport.assertThrowsDataError(["big.png"]) { _ = try ImageFile.decode(big, channels: 3, path: "big.png") }
  }

  func testFitCropsTheCentreOrPadsWithBlack() {
    // 4×2 gray image, columns 10 20 30 40: crop to 2×2 keeps columns 20 30.
    let im = DecodedImage(width: 4, height: 2, channels: 1, pixels: [10, 20, 30, 40, 10, 20, 30, 40])
    XCTAssertEqual(im.fitted(size: 2, fit: .crop), [20, 30, 20, 30])
    // Pad: the 4×2 image becomes 2×1 (area means 15 and 35) centred in 2×2 (row 0; row 1 black).
    XCTAssertEqual(im.fitted(size: 2, fit: .pad), [15, 35, 0, 0])
    // Downscaling by 2 is the mean of each 2×2 block, per channel.
    let rgb = card(width: 4, height: 4, seed: 3)
    let small = rgb.fitted(size: 2, fit: .crop)
    for c in 0..<3 {
      let block = [0, 1, 4, 5].map { Double(rgb.pixels[$0 * 3 + c]) }.reduce(0, +) / 4
      XCTAssertEqual(Double(small[c * 4]), block.rounded(), accuracy: 0)
    }
  }

  /// Three class folders of PNG and JPEG files plus a corrupt and a truncated file.
  func makeFolder() throws -> (root: String, images: [String: DecodedImage]) {
    let root = try TestSupport.makeTempDirectory() + "/photos"
    var images: [String: DecodedImage] = [:]
    for (k, cls) in ["cat", "dog", "emu"].enumerated() {
      try FileManager.default.createDirectory(atPath: "\(root)/\(cls)", withIntermediateDirectories: true)
      for j in 0..<4 {
        let im = card(width: 8, height: 8, seed: 10 * k + j)
        let jpeg = j == 3
        let path = "\(root)/\(cls)/\(j).\(jpeg ? "jpg" : "png")"
        try TestSupport.write(jpeg ? try ImageFile.encodeJPEG(im) : try ImageFile.encodePNG(im), to: path)
        // What the library decodes from the file is the reference for its pixels.
        images[path] = try ImageFile.read(path, channels: 3)
      }
    }
    try TestSupport.write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3], to: "\(root)/dog/bad.png")
    let whole = try ImageFile.encodePNG(card(width: 8, height: 8, seed: 99))
    try TestSupport.write(Array(whole.prefix(40)), to: "\(root)/emu/short.png")
    try TestSupport.write(Array("not an image".utf8), to: "\(root)/emu/notes.txt")
    return (root, images)
  }

  func testPackFolderKeepsLabelsAndPixelsAndFollowsTheBadFilePolicy() throws {
    let (root, images) = try makeFolder()
    let list = try ImageList.folder(root)
    XCTAssertEqual(list.classNames, [["cat", "dog", "emu"]])
    XCTAssertEqual(list.items.count, 14, "12 images + 2 bad ones; notes.txt is not an image")

    // fail: the first bad file stops the pack, and nothing is left behind.
    let out = root + "-packed"
    TestSupport.assertThrowsDataError(["bad.png"]) {
      try ImagePack.pack(list, to: out, options: .init(size: 8, channels: 3), source: root)
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: (root as NSString).deletingLastPathComponent).sorted(), ["photos"])

    // skip: both bad files are listed, the rest packed with exact pixels and labels, in two parts.
    let info = try ImagePack.pack(
      list, to: out, options: .init(size: 8, channels: 3, onBadFile: .skip, maxPartBytes: 5 * (1 + 192)), source: root)
    XCTAssertEqual(info.count, 12)
    XCTAssertEqual(info.skipped.map { ($0.path as NSString).lastPathComponent }.sorted(), ["bad.png", "short.png"])
    XCTAssertEqual(info.parts.map(\.count), [5, 5, 2])
    let set = try ImageSetSource(directory: out)
    let kept = list.items.filter { images[$0.path] != nil }
    var px = [UInt8](repeating: 0, count: 192)
    var sums = [Double](repeating: 0, count: 3)
    for (i, item) in kept.enumerated() {
      XCTAssertEqual(set.label(i), item.labels[0], item.path)
      try set.pixels(i, into: &px)
      XCTAssertEqual(px, planar(images[item.path]!), item.path)
      for c in 0..<3 { sums[c] += px[(c * 64)..<((c + 1) * 64)].reduce(0.0) { $0 + Double($1) / 255 } }
    }
    for c in 0..<3 { XCTAssertEqual(Double(info.mean[c]), sums[c] / (12 * 64), accuracy: 1e-6) }
    XCTAssertEqual(set.bytesRead, 12 * 192)

    // An existing output is never overwritten.
    TestSupport.assertThrowsDataError([out, "exists"]) {
      try ImagePack.pack(list, to: out, options: .init(size: 8, channels: 3, onBadFile: .skip), source: root)
    }
    XCTAssertEqual(try ImageSetSource(directory: out).count, 12)
  }

  func testManifestWithTwoLabelColumns() throws {
    let (root, _) = try makeFolder()
    let csv = root + "/list.csv"
    try TestSupport.write(Array("path,kind,size\ncat/0.png,feline,small\ndog/1.png,canine,big\nemu/2.png,bird,big\n".utf8), to: csv)
    let list = try ImageList.manifest(csv)
    XCTAssertEqual(list.labelNames, ["kind", "size"])
    XCTAssertEqual(list.classNames, [["bird", "canine", "feline"], ["big", "small"]])
    XCTAssertEqual(list.items.map(\.labels), [[2, 1], [1, 0], [0, 0]])
    let out = root + "/packed"
    try ImagePack.pack(list, to: out, options: .init(size: 4, channels: 1), source: csv)
    let set = try ImageSetSource(directory: out)
    XCTAssertEqual((0..<3).map { set.label($0, slot: 1) }, [1, 0, 0])
    try TestSupport.write(Array("file,kind\nx.png,a\n".utf8), to: root + "/nopath.csv")
    TestSupport.assertThrowsDataError(["nopath.csv", "'path'"]) { _ = try ImageList.manifest(root + "/nopath.csv") }
  }

  func testDamagedSetIsRefusedNamingTheFile() throws {
    let (root, _) = try makeFolder()
    let out = root + "-packed"
    try ImagePack.pack(try ImageList.folder(root), to: out, options: .init(size: 8, channels: 3, onBadFile: .skip), source: root)
    let json = out + "/dataset.json"
    let text = try String(contentsOfFile: json, encoding: .utf8)
    // A class table shorter than the labels in the records.
    try text.replacingOccurrences(of: "\"emu\"", with: "").replacingOccurrences(of: "\"dog\",", with: "\"dog\"")
      .write(toFile: json, atomically: true, encoding: .utf8)
    TestSupport.assertThrowsDataError(["part-00000.pxrs", "label 2"]) { _ = try ImageSetSource(directory: out) }
    try "{ \"format\": 1 }".write(toFile: json, atomically: true, encoding: .utf8)
    TestSupport.assertThrowsDataError([json]) { _ = try ImageSetSource(directory: out) }
  }

  /// A rank reads the records of its part of each global batch and nothing else.
  func testEachRankReadsOnlyItsPartOfTheBatch() throws {
    let (root, _) = try makeFolder()
    let out = root + "-packed"
    try ImagePack.pack(try ImageList.folder(root), to: out, options: .init(size: 8, channels: 3, onBadFile: .skip), source: root)
    for rank in 0..<3 {
      let set = try ImageSetSource(directory: out)
      let sampler = try DistributedSampler(count: 12, globalBatch: 6, rank: rank, worldSize: 3, seed: 5)
      let loader = try ContrastiveBatchLoader(source: set, sampler: sampler, augment: SimCLRAugment(), seed: 5)
      var x = [Float](repeating: 0, count: loader.floatsPerBatch)
      var t = [Float](repeating: 0, count: loader.rows * loader.transformCount)
      try loader.load(epoch: 0, batch: 1, into: &x, transforms: &t)
      XCTAssertEqual(set.bytesRead, 2 * 192, "rank \(rank) read \(set.bytesRead) bytes for its 2 samples")
      XCTAssertEqual(loader.transformCount, 6, "RGB adds the grayscale column")
    }
  }

  /// The CIFAR-10 binary layout, written here (3 records per batch file): labels, planes and
  /// class names come through exactly; a broken file is named.
  func testCIFAR10BinaryLayoutPacksExactly() throws {
    let dir = try TestSupport.makeTempDirectory()
    var expected: [(Int, [UInt8])] = []
    for (f, path) in CIFAR10.files(directory: dir, split: .train).enumerated() {
      var bytes: [UInt8] = []
      for r in 0..<3 {
        let label = (f * 3 + r) % 10
        let px = (0..<3072).map { UInt8(($0 * 7 + ($0 / 1024) * 85 + f * 31 + r * 13) % 256) }
        bytes += [UInt8(label)] + px
        expected.append((label, px))
      }
      try TestSupport.write(bytes, to: path)
    }
    let names = (0..<10).map { "c\($0)" }
    try TestSupport.write(Array((names.joined(separator: "\n") + "\n\n").utf8), to: dir + "/batches.meta.txt")
    let out = dir + "/set"
    let info = try CIFAR10.pack(directory: dir, split: .train, to: out, options: .init(size: 32, channels: 3))
    XCTAssertEqual(info.count, 15)
    XCTAssertEqual(info.classNames, [names])
    let set = try ImageSetSource(directory: out)
    var px = [UInt8](repeating: 0, count: 3072)
    for (i, (label, want)) in expected.enumerated() {
      XCTAssertEqual(set.label(i), label)
      try set.pixels(i, into: &px)
      XCTAssertEqual(px, want, "record \(i)")
    }
    // A batch file cut mid-record, and a missing test batch, are errors naming the file.
    let broken = CIFAR10.files(directory: dir, split: .train)[2]
    try TestSupport.write(Array(try TestSupport.readBytes(broken).dropLast(5)), to: broken)
    TestSupport.assertThrowsDataError(["data_batch_3.bin", "3073-byte records"]) {
      try CIFAR10.pack(directory: dir, split: .train, to: dir + "/set2", options: .init(size: 32, channels: 3))
    }
    TestSupport.assertThrowsDataError(["test_batch.bin"]) {
      try CIFAR10.pack(directory: dir, split: .test, to: dir + "/set3", options: .init(size: 32, channels: 3))
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/set2"))
  }
}
