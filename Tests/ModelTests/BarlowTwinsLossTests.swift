import Foundation
import XCTest

@testable import Model

final class BarlowTwinsLossTests: XCTestCase {
  let pool = TensorPool()

  /// PyTorch (float64 from float32 inputs): N = 16 rows, D = 12, λ = 5e-3.
  func testMatchesPyTorch() throws {
    let f = try Fixtures.load("barlow_twins_loss")
    let s = Shape(f["z1"]!.shape[0], f["z1"]!.shape[1])
    let loss = BarlowTwinsLoss(lambda: 5e-3, eps: 1e-5, collective: LocalCollective())
    let l = try loss.forward(z1: pool.tensor(f["z1"]!.values, s), z2: pool.tensor(f["z2"]!.values, s))
    let expected = f["loss"]!.values[0]
    XCTAssertEqual(l, expected, accuracy: 1e-5 * abs(expected))
    let (dz1, dz2) = try loss.backward()
    NumCheck.assertClose(dz1.toArray(), f["dz1"]!.values, rtol: 1e-3, atol: 1e-5, "dz1")
    NumCheck.assertClose(dz2.toArray(), f["dz2"]!.values, rtol: 1e-3, atol: 1e-5, "dz2")
  }

  /// Central differences (h = 1e-3) on both views. λ = 0.3 so that the off-diagonal terms
  /// weigh as much as the diagonal ones in the gradient (at 5e-3 an error there would hide
  /// under the tolerance).
  func testGradientCheck() throws {
    let B = 6
    let D = 4
    let s = Shape(B, D)
    let z1 = pool.tensor(NumCheck.random(B * D, seed: 21), s)
    let z2 = pool.tensor(NumCheck.random(B * D, seed: 22), s)
    // Correlate the views, as two augmentations of one sample are.
    for i in 0..<B * D { z2.data[i] = 0.7 * z1.data[i] + 0.3 * z2.data[i] }
    let loss = BarlowTwinsLoss(lambda: 0.3, collective: LocalCollective())
    _ = try loss.forward(z1: z1, z2: z2)
    let (g1, g2) = try loss.backward()
    let a1 = g1.toArray()
    let a2 = g2.toArray()
    let f = { Double(try loss.forward(z1: z1, z2: z2)) }
    let fd1 = try NumCheck.centralDifferences(z1.data, count: B * D, h: 1e-3, f)
    let fd2 = try NumCheck.centralDifferences(z2.data, count: B * D, h: 1e-3, f)
    XCTAssertGreaterThan(a1.map(abs).max() ?? 0, 1e-2)
    NumCheck.assertClose(a1, fd1, rtol: 1e-2, atol: 2e-3, "dz1 vs finite differences")
    NumCheck.assertClose(a2, fd2, rtol: 1e-2, atol: 2e-3, "dz2 vs finite differences")
  }

  /// A batch of 8 split 3 + 5 over 2 simulated ranks: the same loss as one rank holding all 8
  /// rows (the standardisation and C are global), and each rank's rows of the gradient.
  func testSplitOverRanksEqualsOneRank() throws {
    let (single, ranks) = try splitRun(world: SimulatedWorld(size: 2))
    for r in 0..<2 { XCTAssertEqual(ranks[r].loss, single.loss, accuracy: 1e-5 * abs(single.loss)) }
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].dz1 + ranks[1].dz1, single.dz1), 1e-5)
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].dz2 + ranks[1].dz2, single.dz2), 1e-5)
  }

  /// The split comparison can fail: without the D×D all-reduce (each rank its own matrix),
  /// the ranks' losses and gradients are not one rank's.
  func testSplitComparisonSeesPerRankMatrix() throws {
    let (single, ranks) = try splitRun(world: SimulatedWorld(size: 2, skipFloatAllReduce: true))
    XCTAssertGreaterThan(abs(ranks[0].loss - single.loss), 1e-3 * abs(single.loss))
    XCTAssertGreaterThan(NumCheck.maxRelative(ranks[0].dz1 + ranks[1].dz1, single.dz1), 1e-2)
  }

  private func splitRun(world: SimulatedWorld) throws
    -> (single: (loss: Float, dz1: [Float], dz2: [Float]), ranks: [(loss: Float, dz1: [Float], dz2: [Float])])
  {
    let B = 8
    let D = 5
    let v1 = NumCheck.random(B * D, seed: 31)
    let v2 = zip(v1, NumCheck.random(B * D, seed: 32)).map { 0.6 * $0 + 0.4 * $1 }
    let s = Shape(B, D)
    let one = BarlowTwinsLoss(lambda: 0.1, collective: LocalCollective())
    let l = try one.forward(z1: pool.tensor(v1, s), z2: pool.tensor(v2, s))
    let (d1, d2) = try one.backward()
    let single = (l, d1.toArray(), d2.toArray())
    let splits = [0..<3, 3..<8]
    let ranks = try world.run { comm -> (loss: Float, dz1: [Float], dz2: [Float]) in
      let rows = splits[comm.rank]
      func part(_ a: [Float]) -> Tensor {
        self.pool.tensor(Array(a[rows.lowerBound * D..<rows.upperBound * D]), Shape(rows.count, D))
      }
      let loss = BarlowTwinsLoss(lambda: 0.1, collective: comm)
      let value = try loss.forward(z1: part(v1), z2: part(v2))
      let (g1, g2) = try loss.backward()
      return (value, g1.toArray(), g2.toArray())
    }
    return (single, ranks)
  }
}
