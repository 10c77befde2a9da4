import Foundation
import XCTest

@testable import Model

final class NTXentTests: XCTestCase {
  let pool = TensorPool()

  private func checkFixture(_ name: String, temperature: Float) throws {
    let f = try Fixtures.load(name)
    let z1 = f["z1"]!.values
    let z2 = f["z2"]!.values
    let B = f["z1"]!.shape[0]
    let D = f["z1"]!.shape[1]
    let loss = NTXentLoss(temperature: temperature, collective: LocalCollective())
    let z = pool.tensor(z1 + z2, Shape(2 * B, D, 1, 1))
    let value = try loss.forward(z)
    XCTAssertEqual(value, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]), name)
    let dz = try loss.backward().toArray()
    NumCheck.assertClose(
      Array(dz[0..<B * D]), f["dz1"]!.values, rtol: 1e-4, atol: 1e-5, "\(name) dz1")
    NumCheck.assertClose(
      Array(dz[B * D..<2 * B * D]), f["dz2"]!.values, rtol: 1e-4, atol: 1e-5, "\(name) dz2")
  }

  func testTemperature05MatchesPyTorch() throws {
    try checkFixture("ntxent_t0.5", temperature: 0.5)
  }

  func testTemperature01MatchesPyTorch() throws {
    try checkFixture("ntxent_t0.1", temperature: 0.1)
  }

  /// Central differences (h = 1e-3, loss returned in Float) against backward; tolerance 2e-3
  /// of the largest gradient plus 2e-2 relative.
  func testGradientCheck() throws {
    for t: Float in [0.5, 0.2] {
      let B = 4
      let D = 6
      let z = pool.tensor(NumCheck.random(2 * B * D, seed: 77, scale: 1.5), Shape(2 * B, D, 1, 1))
      let loss = NTXentLoss(temperature: t, collective: LocalCollective())
      _ = try loss.forward(z)
      let dz = try loss.backward().toArray()
      let fd = try NumCheck.centralDifferences(z.data, count: z.count, h: 1e-3) {
        Double(try loss.forward(z))
      }
      NumCheck.assertClose(dz, fd, rtol: 2e-2, atol: 2e-3, "dz vs finite differences, τ = \(t)")
    }
  }

  /// Scaling rows does not change the loss (cosine similarity), and the gradient is
  /// orthogonal to each row.
  func testScaleInvariance() throws {
    let B = 3
    let D = 5
    let values = NumCheck.random(2 * B * D, seed: 9)
    let loss = NTXentLoss(temperature: 0.3, collective: LocalCollective())
    let a = try loss.forward(pool.tensor(values, Shape(2 * B, D)))
    let dz = try loss.backward().toArray()
    let b = try loss.forward(pool.tensor(values.map { $0 * 7 }, Shape(2 * B, D)))
    XCTAssertEqual(a, b, accuracy: 1e-5)
    for i in 0..<2 * B {
      var dot: Float = 0
      for j in 0..<D { dot += dz[i * D + j] * values[i * D + j] }
      XCTAssertEqual(dot, 0, accuracy: 1e-6)
    }
  }

  func testRejectsOddRowsAndBackwardFirst() {
    let loss = NTXentLoss(temperature: 0.5, collective: LocalCollective())
    XCTAssertThrowsError(try loss.backward())
    XCTAssertThrowsError(try loss.forward(pool.tensor([1, 2, 3], Shape(3, 1))))
  }

  /// The global batch: B samples, views `z1`, `z2` [B, D]. Single rank: z = [z1; z2].
  /// Rank r of W holds samples r·B/W..<(r+1)·B/W: z_r = [z1 rows; z2 rows].
  private func splitRun(
    world: SimulatedWorld, z1: [Float], z2: [Float], B: Int, D: Int, t: Float
  ) throws -> [(Float, [Float])] {
    let W = world.size
    let b = B / W
    return try world.run { comm in
      let r = comm.rank
      let local = Array(z1[r * b * D..<(r + 1) * b * D]) + Array(z2[r * b * D..<(r + 1) * b * D])
      let loss = NTXentLoss(temperature: t, collective: comm)
      let value = try loss.forward(self.pool.tensor(local, Shape(2 * b, D)))
      return (value, try loss.backward().toArray())
    }
  }

  /// Maps per-rank dz back to the single-rank layout [dz1; dz2].
  private func assemble(_ ranks: [[Float]], B: Int, D: Int) -> [Float] {
    let W = ranks.count
    let b = B / W
    var d1: [Float] = []
    var d2: [Float] = []
    for r in 0..<W {
      d1 += ranks[r][0..<b * D]
      d2 += ranks[r][b * D..<2 * b * D]
    }
    return d1 + d2
  }

  /// DESIGN.md invariant 3: the fixture's batch of 8 split over 2 (and 4) simulated ranks
  /// gives the single-rank loss on every rank and the single-rank gradients.
  func testSplitOverRanksEqualsOneRank() throws {
    let f = try Fixtures.load("ntxent_t0.1")
    let z1 = f["z1"]!.values
    let z2 = f["z2"]!.values
    let B = 8
    let D = 16
    let single = NTXentLoss(temperature: 0.1, collective: LocalCollective())
    let l = try single.forward(pool.tensor(z1 + z2, Shape(2 * B, D)))
    let dz = try single.backward().toArray()
    for W in [2, 4] {
      let world = SimulatedWorld(size: W)
      let ranks = try splitRun(world: world, z1: z1, z2: z2, B: B, D: D, t: 0.1)
      for r in 0..<W {
        XCTAssertEqual(ranks[r].0, l, accuracy: 1e-5 * abs(l), "loss on rank \(r) of \(W)")
      }
      let split = assemble(ranks.map(\.1), B: B, D: D)
      XCTAssertLessThanOrEqual(NumCheck.maxRelative(split, dz), 1e-5, "dz, \(W) ranks")
      XCTAssertEqual(
        world.log[0],
        [
          "allGather(\(2 * B / W * D))", "allReduceSum(Double, 1)",
          "allReduceSum(Float, \(2 * B * D))",
        ])
      for r in 1..<W { XCTAssertEqual(world.log[r], world.log[0]) }
    }
  }

  /// Keeping only the local slice of the gathered gradient without summing over ranks (the
  /// bug of lightly issue 1528) gives the right loss but wrong gradients: the test above can
  /// fail.
  func testMissingGradientSumIsDetected() throws {
    let f = try Fixtures.load("ntxent_t0.5")
    let z1 = f["z1"]!.values
    let z2 = f["z2"]!.values
    let B = 8
    let D = 16
    let single = NTXentLoss(temperature: 0.5, collective: LocalCollective())
    _ = try single.forward(pool.tensor(z1 + z2, Shape(2 * B, D)))
    let dz = try single.backward().toArray()
    let ranks = try splitRun(
      world: SimulatedWorld(size: 2, skipFloatAllReduce: true), z1: z1, z2: z2, B: B, D: D, t: 0.5)
    XCTAssertGreaterThan(NumCheck.maxRelative(assemble(ranks.map(\.1), B: B, D: D), dz), 1e-2)
  }
}
