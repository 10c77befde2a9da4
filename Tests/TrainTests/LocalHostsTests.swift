import Foundation
import Model
import XCTest

/// Pretraining across "hosts" made on this machine by `cluster/local-hosts` (network
/// namespaces joined by a bridge; Open MPI over TCP through an `ip netns exec` rsh agent)
/// gives the same parameters as one rank holding the whole batch.
final class LocalHostsTests: XCTestCase {
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("cluster/local-hosts").path

  override func tearDown() {
    _ = try? Processes.run("/bin/bash", [Self.script, "down"], timeout: 60)
  }

  func pretrainArgs(_ dir: String) -> [String] {
    [
      "pretrain", "--model", "conv4", "--global-batch", "32", "--max-steps", "3", "--warmup-steps", "1",
      "--seed", "5", "--threads", "1", "--run-dir", dir,
    ]
  }

  func runOnHosts(_ n: Int) throws -> (Processes.Result, String) {
    let up = try Processes.run("/bin/bash", [Self.script, "up", "\(n)"], timeout: 60)
    XCTAssertEqual(up.status, 0, up.stderr)
    let dir = Processes.temporaryDirectory("hosts\(n)")
    let r = try Processes.run(
      "/bin/bash", [Self.script, "mpirun", "-np", "\(n)", "--bind-to", "none", Processes.parallax] + pretrainArgs(dir),
      timeout: 240)
    return (r, dir)
  }

  func testTwoAndFourHostsOverTCPMatchOneRank() throws {
    let single = Processes.temporaryDirectory("hosts-single")
    let one = try Processes.parallax(np: 1, pretrainArgs(single))
    XCTAssertEqual(one.status, 0, one.stderr)
    for n in [2, 4] {
      let (r, dir) = try runOnHosts(n)
      XCTAssertEqual(r.status, 0, "\(n) hosts:\n\(r.stdout)\n\(r.stderr)")
      XCTAssertTrue(r.stdout.contains("\(n) rank(s) on \(n) node(s)"), r.stdout)
      XCTAssertLessThanOrEqual(relativeDifference(try latestModel(single), try latestModel(dir)).0, 1e-4, "\(n) hosts")
    }
  }

  func testDownLeavesNothingBehind() throws {
    _ = try runOnHosts(2)
    let down = try Processes.run("/bin/bash", [Self.script, "down"], timeout: 60)
    XCTAssertEqual(down.status, 0, down.stderr)
    let list = try Processes.run("/usr/sbin/ip", ["netns", "list"], timeout: 30)
    XCTAssertFalse(list.stdout.contains("px-"), list.stdout)
    XCTAssertFalse(FileManager.default.fileExists(atPath: "/etc/netns/px-h1"))
  }
}
