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
      // Columns: bytes, count, iterations, µs (Communicator, raw), algorithm GB/s (both), bus
      // GB/s (both), ratio, fastest µs (both), fastest ratio. Each derived column must agree
      // with the ones it is derived from, so a wrong size, unit or formula fails.
      func close(_ a: Double, _ b: Double, _ what: String, _ line: Substring) {
        XCTAssertLessThanOrEqual(abs(a - b), 2e-4 + 1e-2 * abs(b), "\(what): \(a) vs \(b) in \(line)")
      }
      for (k, line) in lines.dropFirst().enumerated() {
        let f = line.split(separator: ",").map { Double($0) ?? .nan }
        guard f.count == 13 else { XCTFail("13 columns expected: \(line)"); continue }
        XCTAssertEqual(f[0], Double(1024 << k), "sizes double from --min-bytes: \(line)")
        XCTAssertEqual(f[1], f[0] / 4, "count is Float elements: \(line)")
        XCTAssertGreaterThan(f[3], 0, String(line))
        XCTAssertGreaterThan(f[4], 0, String(line))
        close(f[5], f[0] / (f[3] * 1e-6) / 1e9, "Communicator algorithm bandwidth", line)
        close(f[6], f[0] / (f[4] * 1e-6) / 1e9, "raw algorithm bandwidth", line)
        close(f[7], f[5] * 2 * (2 - 1) / 2, "bus bandwidth at 2 ranks", line)
        close(f[8], f[6], "raw bus bandwidth at 2 ranks", line)
        close(f[9], f[3] / f[4], "median ratio", line)
        XCTAssertLessThanOrEqual(f[10], f[3] + 1e-3, "the fastest round is not slower than the median: \(line)")
        XCTAssertLessThanOrEqual(f[11], f[4] + 1e-3, "fastest raw round ≤ median: \(line)")
        close(f[12], f[10] / f[11], "fastest-round ratio", line)
      }
    }
  }
}
