import Foundation
import XCTest

@testable import Data

final class IDXFileTests: XCTestCase {
  let dir = TestSupport.fashionDirectory

  func testTrainLabels() throws {
    let (dims, bytes) = try IDXFile.read(path: "\(dir)/train-labels-idx1-ubyte.gz")
    XCTAssertEqual(dims, [60000])
    XCTAssertEqual(bytes.count, 60000)
    XCTAssertTrue(bytes.allSatisfy { $0 <= 9 })
    // Every class is present, and the training set is balanced (6000 each).
    var histogram = [Int](repeating: 0, count: 10)
    for b in bytes { histogram[Int(b)] += 1 }
    XCTAssertEqual(histogram, [Int](repeating: 6000, count: 10))
  }

  func testTestImages() throws {
    let (dims, bytes) = try IDXFile.read(path: "\(dir)/t10k-images-idx3-ubyte.gz")
    XCTAssertEqual(dims, [10000, 28, 28])
    XCTAssertEqual(bytes.count, 10000 * 28 * 28)
    XCTAssertGreaterThan(bytes.max()!, 200)  // real images, not zeros
  }

  func testFashionMNISTLoad() {
    let ds = TestSupport.testSplit
    XCTAssertEqual(ds.count, 10000)
    XCTAssertEqual(ds.channels, 1)
    XCTAssertEqual(ds.height, 28)
    XCTAssertEqual(ds.width, 28)
    XCTAssertEqual(ds.labels.count, 10000)
    XCTAssertTrue(ds.labels.allSatisfy { (0..<10).contains($0) })
    // The first test image of Fashion-MNIST is an ankle boot (label 9).
    XCTAssertEqual(ds.label(0), 9)
  }

  func testGzipPassesUncompressedFilesThrough() throws {
    let tmp = try TestSupport.makeTempDirectory()
    let raw = try Gzip.decompress(path: "\(dir)/t10k-labels-idx1-ubyte.gz")
    let plain = "\(tmp)/t10k-labels-idx1-ubyte"
    try TestSupport.write(raw, to: plain)
    XCTAssertEqual(try Gzip.decompress(path: plain), raw)
    let parsed = try IDXFile.read(path: plain)
    XCTAssertEqual(parsed.dims, [10000])
  }

  func testTruncatedIDXNamesFile() throws {
    let tmp = try TestSupport.makeTempDirectory()
    let raw = try Gzip.decompress(path: "\(dir)/t10k-labels-idx1-ubyte.gz")
    let path = "\(tmp)/truncated-labels-idx1-ubyte"
    try TestSupport.write(Array(raw.prefix(raw.count - 100)), to: path)
    TestSupport.assertThrowsDataError([path, "truncated"]) { _ = try IDXFile.read(path: path) }
  }

  func testTruncatedGzipNamesFile() throws {
    let tmp = try TestSupport.makeTempDirectory()
    let gz = try TestSupport.readBytes("\(dir)/t10k-labels-idx1-ubyte.gz")
    let path = "\(tmp)/cut.gz"
    try TestSupport.write(Array(gz.prefix(gz.count / 2)), to: path)
    TestSupport.assertThrowsDataError([path, "gzip"]) { _ = try IDXFile.read(path: path) }
  }

  func testWrongMagicNamesFile() throws {
    let tmp = try TestSupport.makeTempDirectory()
    var raw = try Gzip.decompress(path: "\(dir)/t10k-labels-idx1-ubyte.gz")
    raw[2] = 0x0D  // float data: not supported
    let path = "\(tmp)/wrong-magic-idx1-ubyte"
    try TestSupport.write(raw, to: path)
    TestSupport.assertThrowsDataError([path, "magic", "0x00000d01"]) {
      _ = try IDXFile.read(path: path)
    }
  }

  func testMissingFileNamesFile() {
    TestSupport.assertThrowsDataError(["/nonexistent/x.gz", "no such file"]) {
      _ = try IDXFile.read(path: "/nonexistent/x.gz")
    }
  }

  func testMissingDirectoryMentionsPackage() {
    let missing = "/nonexistent/fashion-mnist"
    TestSupport.assertThrowsDataError([
      missing, "dataset-fashion-mnist", "apt-get install dataset-fashion-mnist",
    ]) {
      _ = try FashionMNIST.load(split: .train, directory: missing)
    }
  }
}
