import Foundation
import XCTest

/// `parallax bench allreduce` under mpirun: the blocking sweep and the nonblocking one that
/// `scale --predict` fits the gradient buckets' cost on.
final class BenchAllreduceTests: XCTestCase {
  func testBlockingAndNonblockingSweepsWriteOneRowPerSize() throws {
    for nonblocking in [false, true] {
      let dir = Processes.temporaryDirectory("sweep-\(nonblocking)")
      let csv = dir + "/sweep.csv"
      let r = try Processes.parallax(
        np: 2,
        ["bench", "allreduce", "--min-bytes", "1024", "--max-bytes", "16384", "--rounds", "2",
         "--budget-bytes", "65536", "--csv", csv] + (nonblocking ? ["--nonblocking", "--in-flight", "3"] : []))
      XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
      let said = r.stdout + r.stderr
      XCTAssertTrue(said.contains(nonblocking ? "nonblocking (MPI_Iallreduce + wait, 3 in flight)" : "· blocking ·"), said)
      let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
      XCTAssertEqual(lines.count, 1 + 5, "header + 1, 2, 4, 8, 16 KiB")
      for line in lines.dropFirst() {
        let f = line.split(separator: ",")
        XCTAssertGreaterThan(Double(f[3]) ?? 0, 0, String(line))
        XCTAssertGreaterThan(Double(f[4]) ?? 0, 0, String(line))
      }
    }
  }
}
