import Foundation
import XCTest

/// `parallax eval` splits feature extraction across ranks and gathers to rank 0: the probe
/// must see exactly the features one rank would extract.
final class EvalTests: XCTestCase {
  func testLinearProbeIsTheSameOnTwoRanksAsOnOne() throws {
    let dir = Processes.temporaryDirectory("eval-ranks")
    let pre = try Processes.parallax(
      np: 1, ["pretrain", "--global-batch", "32", "--max-steps", "1", "--threads", "1", "--run-dir", dir])
    XCTAssertEqual(pre.status, 0, pre.stderr)
    // 601 images: the ranks' shares differ in size (301 + 300), exercising the padding.
    let args = ["eval", "linear", "--checkpoint", dir + "/latest", "--limit", "601", "--epochs", "2", "--threads", "1"]
    let one = try Processes.parallax(np: 1, args)
    let two = try Processes.parallax(np: 2, args)
    XCTAssertEqual(one.status, 0, one.stderr)
    XCTAssertEqual(two.status, 0, two.stderr)
    /// "linear simclr conv4 (pooled): 49.67% (64-d, 5.5 s)" without the time.
    func accuracies(_ out: String) -> [String] {
      out.split(separator: "\n").filter { $0.hasPrefix("linear ") }.map { $0.components(separatedBy: ", ")[0] }
    }
    let a = accuracies(one.stdout)
    XCTAssertEqual(a.count, 2, one.stdout)
    XCTAssertEqual(a, accuracies(two.stdout))
  }
}
