import Foundation
import XCTest

@testable import Model

final class BYOLLossTests: XCTestCase {
  let pool = TensorPool()

  /// PyTorch: mean(2 − 2cos(p1, t2)) + mean(2 − 2cos(p2, t1)), t constant.
  func testMatchesPyTorch() throws {
    let f = try Fixtures.load("byol_loss")
    let s = Shape(f["p1"]!.shape[0], f["p1"]!.shape[1])
    let loss = BYOLLoss(collective: LocalCollective())
    let l = try loss.forward(
      p1: pool.tensor(f["p1"]!.values, s), p2: pool.tensor(f["p2"]!.values, s),
      t1: pool.tensor(f["t1"]!.values, s), t2: pool.tensor(f["t2"]!.values, s))
    XCTAssertEqual(l, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]))
    let (dp1, dp2) = try loss.backward()
    NumCheck.assertClose(dp1.toArray(), f["dp1"]!.values, rtol: 1e-4, atol: 1e-5, "dp1")
    NumCheck.assertClose(dp2.toArray(), f["dp2"]!.values, rtol: 1e-4, atol: 1e-5, "dp2")
  }

  /// Central differences (h = 1e-3) on p1 and p2, targets fixed.
  func testGradientCheck() throws {
    let B = 3
    let D = 5
    let s = Shape(B, D)
    let p1 = pool.tensor(NumCheck.random(B * D, seed: 41), s)
    let p2 = pool.tensor(NumCheck.random(B * D, seed: 42), s)
    let t1 = pool.tensor(NumCheck.random(B * D, seed: 43), s)
    let t2 = pool.tensor(NumCheck.random(B * D, seed: 44), s)
    let loss = BYOLLoss(collective: LocalCollective())
    _ = try loss.forward(p1: p1, p2: p2, t1: t1, t2: t2)
    let (g1, g2) = try loss.backward()
    let a1 = g1.toArray()
    let a2 = g2.toArray()
    let f = { Double(try loss.forward(p1: p1, p2: p2, t1: t1, t2: t2)) }
    let fd1 = try NumCheck.centralDifferences(p1.data, count: B * D, h: 1e-3, f)
    let fd2 = try NumCheck.centralDifferences(p2.data, count: B * D, h: 1e-3, f)
    NumCheck.assertClose(a1, fd1, rtol: 1e-2, atol: 1e-3, "dp1 vs finite differences")
    NumCheck.assertClose(a2, fd2, rtol: 1e-2, atol: 1e-3, "dp2 vs finite differences")
  }

  /// 8 rows split 3 + 5 over 2 simulated ranks: the global mean, each rank's gradient rows.
  func testSplitOverRanksEqualsOneRank() throws {
    let B = 8
    let D = 6
    let v = (1...4).map { NumCheck.random(B * D, seed: UInt64(50 + $0)) }
    let s = Shape(B, D)
    let single = BYOLLoss(collective: LocalCollective())
    let l = try single.forward(
      p1: pool.tensor(v[0], s), p2: pool.tensor(v[1], s), t1: pool.tensor(v[2], s), t2: pool.tensor(v[3], s))
    let (d1, d2) = try single.backward()
    let (dp1, dp2) = (d1.toArray(), d2.toArray())
    let splits = [0..<3, 3..<8]
    let ranks = try SimulatedWorld(size: 2).run { comm -> (Float, [Float], [Float]) in
      let rows = splits[comm.rank]
      func part(_ a: [Float]) -> Tensor {
        self.pool.tensor(Array(a[rows.lowerBound * D..<rows.upperBound * D]), Shape(rows.count, D))
      }
      let loss = BYOLLoss(collective: comm)
      let value = try loss.forward(p1: part(v[0]), p2: part(v[1]), t1: part(v[2]), t2: part(v[3]))
      let (g1, g2) = try loss.backward()
      return (value, g1.toArray(), g2.toArray())
    }
    for r in 0..<2 { XCTAssertEqual(ranks[r].0, l, accuracy: 1e-5 * abs(l)) }
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].1 + ranks[1].1, dp1), 1e-5)
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].2 + ranks[1].2, dp2), 1e-5)
  }
}
