import Foundation
import Model
import XCTest

extension XCTestCase {
  /// The largest per-tensor relative difference ‖a − b‖ / max(‖a‖, floor) between two
  /// state dicts, and the tensor it occurs in; asserts that both hold the same names.
  ///
  /// `floor` matters for tensors whose true value is (nearly) zero, such as a BatchNorm shift
  /// followed by another BatchNorm: there both runs hold only rounding noise.
  func relativeDifference(
    _ a: [String: SafeTensors.Entry], _ b: [String: SafeTensors.Entry], floor: Double = 1e-12,
    including include: (String) -> Bool = { _ in true }
  ) -> (Double, String) {
    var worst = (0.0, "")
    XCTAssertEqual(Set(a.keys), Set(b.keys))
    for (k, ea) in a where include(k) {
      guard let eb = b[k] else { continue }
      var num = 0.0
      var den = 0.0
      for i in 0..<ea.values.count {
        let d = Double(ea.values[i]) - Double(eb.values[i])
        num += d * d
        den += Double(ea.values[i]) * Double(ea.values[i])
      }
      let rel = num.squareRoot() / max(den.squareRoot(), floor)
      if rel > worst.0 { worst = (rel, k) }
    }
    return worst
  }

  /// The tensors of a run directory's latest checkpoint.
  func latestModel(_ runDir: String) throws -> [String: SafeTensors.Entry] {
    try SafeTensors.read(URL(fileURLWithPath: runDir + "/latest/model.safetensors")).entries
  }
}
