import Model
import XCTest

@testable import Train

/// `--precision` is set on the trained arena after a method is built; MoCo's key network and
/// BYOL's target live on arenas of their own and must run at that precision too.
final class MomentumTargetPrecisionTests: XCTestCase {
  func testEMATargetsRunAtTheOnlineArenasPrecision() throws {
    for method in [Method.moco, .byol] {
      var c = PretrainConfig()
      c.method = method
      c.model = .conv4
      let m = try Methods.make(c, collective: LocalCollective())
      let target: ParameterArena
      let use: () -> Void
      if let moco = m as? MoCoMethod {
        target = moco.key.arena
        use = { _ = moco.key.network }
      } else {
        let byol = try XCTUnwrap(m as? BYOLMethod)
        target = byol.target.arena
        use = { _ = byol.target.network }
      }
      for p in [GemmPrecision.bf16, .fp32, .bf16] {
        m.arena.gemmPrecision = p
        use()
        XCTAssertEqual(target.gemmPrecision, p, "\(method): the EMA target's GEMMs at \(p)")
      }
    }
  }
}
