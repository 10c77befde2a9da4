import Foundation
import XCTest

@testable import Model

final class SimSiamLossTests: XCTestCase {
  let pool = TensorPool()

  func testMatchesPyTorch() throws {
    let f = try Fixtures.load("simsiam_loss")
    let B = f["p1"]!.shape[0]
    let D = f["p1"]!.shape[1]
    let s = Shape(B, D)
    let loss = SimSiamLoss(collective: LocalCollective())
    let l = try loss.forward(
      p1: pool.tensor(f["p1"]!.values, s), p2: pool.tensor(f["p2"]!.values, s),
      z1: pool.tensor(f["z1"]!.values, s), z2: pool.tensor(f["z2"]!.values, s))
    XCTAssertEqual(l, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]))
    let (dp1, dp2) = try loss.backward()
    NumCheck.assertClose(dp1.toArray(), f["dp1"]!.values, rtol: 1e-4, atol: 1e-5, "dp1")
    NumCheck.assertClose(dp2.toArray(), f["dp2"]!.values, rtol: 1e-4, atol: 1e-5, "dp2")
    // Stop-gradient, on computed values. PyTorch's dz1, dz2 are zero because z is detached,
    // not because L ignores z: the loss computed here does depend on z2 (finite differences
    // are far from 0), yet the p-gradient is that of L with z held fixed (above), and the
    // targets are left untouched.
    let z1 = pool.tensor(f["z1"]!.values, s), z2 = pool.tensor(f["z2"]!.values, s)
    let p1 = pool.tensor(f["p1"]!.values, s), p2 = pool.tensor(f["p2"]!.values, s)
    _ = try loss.forward(p1: p1, p2: p2, z1: z1, z2: z2)
    let (g1, _) = try loss.backward()
    let computed = g1.toArray()
    XCTAssertEqual(z1.toArray(), f["z1"]!.values)
    XCTAssertEqual(z2.toArray(), f["z2"]!.values)
    let fdz2 = try NumCheck.centralDifferences(z2.data, count: B * D, h: 1e-3) {
      Double(try loss.forward(p1: p1, p2: p2, z1: z1, z2: z2))
    }
    XCTAssertGreaterThan(fdz2.map(abs).max() ?? 0, 100 * (f["dz2"]!.values.map(abs).max() ?? 0) + 1e-3)
    let fdp1 = try NumCheck.centralDifferences(p1.data, count: B * D, h: 1e-3) {
      Double(try loss.forward(p1: p1, p2: p2, z1: z1, z2: z2))
    }
    NumCheck.assertClose(computed, fdp1, rtol: 1e-2, atol: 1e-3, "dp1 vs finite differences with z fixed")
  }

  /// Central differences (h = 1e-3) on p1 and p2; tolerance 1e-3 of the largest gradient
  /// plus 1e-2 relative.
  func testGradientCheck() throws {
    let B = 3
    let D = 5
    let s = Shape(B, D)
    let p1 = pool.tensor(NumCheck.random(B * D, seed: 1), s)
    let p2 = pool.tensor(NumCheck.random(B * D, seed: 2), s)
    let z1 = pool.tensor(NumCheck.random(B * D, seed: 3), s)
    let z2 = pool.tensor(NumCheck.random(B * D, seed: 4), s)
    let loss = SimSiamLoss(collective: LocalCollective())
    _ = try loss.forward(p1: p1, p2: p2, z1: z1, z2: z2)
    let (g1, g2) = try loss.backward()
    let a1 = g1.toArray()
    let a2 = g2.toArray()
    let f = { Double(try loss.forward(p1: p1, p2: p2, z1: z1, z2: z2)) }
    let fd1 = try NumCheck.centralDifferences(p1.data, count: B * D, h: 1e-3, f)
    let fd2 = try NumCheck.centralDifferences(p2.data, count: B * D, h: 1e-3, f)
    NumCheck.assertClose(a1, fd1, rtol: 1e-2, atol: 1e-3, "dp1 vs finite differences")
    NumCheck.assertClose(a2, fd2, rtol: 1e-2, atol: 1e-3, "dp2 vs finite differences")
  }

  /// A batch of 8 split 3 + 5 over 2 simulated ranks: same loss, same gradient rows.
  func testSplitOverRanksEqualsOneRank() throws {
    let B = 8
    let D = 6
    let v = (1...4).map { NumCheck.random(B * D, seed: UInt64(10 + $0)) }
    let single = SimSiamLoss(collective: LocalCollective())
    let s = Shape(B, D)
    let l = try single.forward(
      p1: pool.tensor(v[0], s), p2: pool.tensor(v[1], s), z1: pool.tensor(v[2], s),
      z2: pool.tensor(v[3], s))
    let (d1, d2) = try single.backward()
    let dp1 = d1.toArray()
    let dp2 = d2.toArray()
    let splits = [0..<3, 3..<8]
    let ranks = try SimulatedWorld(size: 2).run { comm -> (Float, [Float], [Float]) in
      let rows = splits[comm.rank]
      let ls = Shape(rows.count, D)
      func part(_ a: [Float]) -> Tensor {
        self.pool.tensor(Array(a[rows.lowerBound * D..<rows.upperBound * D]), ls)
      }
      let loss = SimSiamLoss(collective: comm)
      let value = try loss.forward(p1: part(v[0]), p2: part(v[1]), z1: part(v[2]), z2: part(v[3]))
      let (g1, g2) = try loss.backward()
      return (value, g1.toArray(), g2.toArray())
    }
    for r in 0..<2 { XCTAssertEqual(ranks[r].0, l, accuracy: 1e-6) }
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].1 + ranks[1].1, dp1), 1e-5)
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].2 + ranks[1].2, dp2), 1e-5)
  }
}
