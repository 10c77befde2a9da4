import Foundation
import XCTest

@testable import Train

/// The presets in `configs/` parse and validate, and the SSL notebook's carries its numbers.
final class PresetTests: XCTestCase {
  static let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("configs")

  func testEveryPresetParsesAndValidates() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: Self.configs.path).filter { $0.hasSuffix(".yaml") }
    XCTAssertTrue(files.contains("ssl-notebook.yaml") && files.contains("ssl-short.yaml"), "\(files)")
    for f in files {
      let c = try PretrainConfig.load(yamlPath: Self.configs.appendingPathComponent(f).path)
      if c.data == .fashionMNIST || c.data == .images { try c.validate(worldSize: 2) }
    }
  }

  func testNotebookPresetHasTheNotebooksDefaults() throws {
    let c = try PretrainConfig.load(yamlPath: Self.configs.appendingPathComponent("ssl-notebook.yaml").path)
    XCTAssertEqual(c.model, .conv6)
    XCTAssertEqual(c.epochs, 400)
    XCTAssertEqual(c.maxSteps, 0)
    XCTAssertEqual(c.optimizer, .adam)
    XCTAssertEqual(c.baseLR, 1e-4)
    XCTAssertEqual(c.lrScaling, .none)
    let short = try PretrainConfig.load(yamlPath: Self.configs.appendingPathComponent("ssl-short.yaml").path)
    XCTAssertEqual(short.model, .conv6)
    XCTAssertLessThanOrEqual(short.maxSteps * short.globalBatch, 10_000, "the short preset stays short")
  }
}
