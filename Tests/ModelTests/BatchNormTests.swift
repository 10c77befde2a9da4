import Foundation
import XCTest

@testable import Model

final class BatchNormTests: XCTestCase {
  let pool = TensorPool()

  /// A BN layer in its own arena, with optional affine values.
  private func makeBN(
    channels: Int, weight: [Float]? = nil, bias: [Float]? = nil, collective: Collective? = nil
  ) -> (BatchNorm, ParameterArena) {
    let arena = ParameterArena()
    let bn = BatchNorm(arena: arena, name: "bn", channels: channels, collective: collective)
    arena.allocate(seed: 1)
    if let w = weight { arena.set(arena.parameter(named: "bn.weight")!, w) }
    if let b = bias { arena.set(arena.parameter(named: "bn.bias")!, b) }
    return (bn, arena)
  }

  private func checkFixture(_ name: String, shape: Shape) throws {
    let f = try Fixtures.load(name)
    let (bn, arena) = makeBN(
      channels: shape.c, weight: f["weight"]!.values, bias: f["bias"]!.values)
    let x = pool.tensor(f["x"]!.values, shape)
    let dy = pool.tensor(f["dy"]!.values, shape)
    let y = try bn.forward(x, training: true)
    NumCheck.assertClose(y.toArray(), f["y"]!.values, "\(name) y")
    let dx = try bn.backward(dy)
    NumCheck.assertClose(dx.toArray(), f["dx"]!.values, rtol: 1e-4, atol: 1e-5, "\(name) dx")
    NumCheck.assertClose(
      arena.gradient(of: arena.parameter(named: "bn.weight")!), f["dweight"]!.values,
      "\(name) dweight")
    NumCheck.assertClose(
      arena.gradient(of: arena.parameter(named: "bn.bias")!), f["dbias"]!.values, "\(name) dbias")
    NumCheck.assertClose(
      arena.values(of: arena.buffer(named: "bn.running_mean")!), f["running_mean"]!.values,
      "\(name) running_mean")
    NumCheck.assertClose(
      arena.values(of: arena.buffer(named: "bn.running_var")!), f["running_var"]!.values,
      "\(name) running_var")
  }

  func testBatchNorm2dMatchesPyTorch() throws {
    try checkFixture("batchnorm2d_train", shape: Shape(4, 5, 6, 6))
  }

  func testBatchNorm1dMatchesPyTorch() throws {
    try checkFixture("batchnorm1d_train", shape: Shape(8, 7, 1, 1))
  }

  func testRegistersPyTorchNamesAndKinds() {
    let arena = ParameterArena()
    _ = BatchNorm(arena: arena, name: "0.1", channels: 3)
    XCTAssertEqual(arena.parameterRanges.map(\.name), ["0.1.weight", "0.1.bias"])
    XCTAssertEqual(arena.parameterRanges.map(\.kind), [.biasOrNorm, .biasOrNorm])
    XCTAssertEqual(arena.bufferRanges.map(\.name), ["0.1.running_mean", "0.1.running_var"])
    arena.allocate(seed: 0)
    XCTAssertEqual(arena.values(of: arena.parameterRanges[0]), [1, 1, 1])
    XCTAssertEqual(arena.values(of: arena.parameterRanges[1]), [0, 0, 0])
    XCTAssertEqual(arena.values(of: arena.bufferRanges[0]), [0, 0, 0])
    XCTAssertEqual(arena.values(of: arena.bufferRanges[1]), [1, 1, 1])
  }

  /// Central differences of L = Σ y·dy (so ∂L/∂y = dy) against backward, for x, weight and
  /// bias. Forward in Float, loss summed in Double, h = 1e-2; tolerance 1e-3 of the largest
  /// gradient plus 1e-2 relative (the float forward's rounding divided by 2h dominates).
  private func gradientCheck(shape: Shape, seed: UInt64) throws {
    let C = shape.c
    let (bn, arena) = makeBN(
      channels: C, weight: NumCheck.random(C, seed: seed, scale: 0.5, offset: 1),
      bias: NumCheck.random(C, seed: seed + 1, scale: 0.5))
    let x = pool.tensor(NumCheck.random(shape.count, seed: seed + 2, scale: 2, offset: 0.3), shape)
    let dy = pool.tensor(NumCheck.random(shape.count, seed: seed + 3), shape)
    func loss() throws -> Double {
      let y = try bn.forward(x, training: true)
      var s = 0.0
      for i in 0..<shape.count { s += Double(y.data[i]) * Double(dy.data[i]) }
      return s
    }
    _ = try loss()
    let dx = try bn.backward(dy).toArray()
    let w = arena.parameter(named: "bn.weight")!
    let b = arena.parameter(named: "bn.bias")!
    let dw = arena.gradient(of: w)
    let db = arena.gradient(of: b)
    let fdx = try NumCheck.centralDifferences(x.data, count: shape.count, h: 1e-2, loss)
    let fdw = try NumCheck.centralDifferences(arena.params + w.offset, count: C, h: 1e-2, loss)
    let fdb = try NumCheck.centralDifferences(arena.params + b.offset, count: C, h: 1e-2, loss)
    NumCheck.assertClose(dx, fdx, rtol: 1e-2, atol: 1e-3, "dx vs finite differences \(shape)")
    NumCheck.assertClose(dw, fdw, rtol: 1e-2, atol: 1e-3, "dweight vs finite differences \(shape)")
    NumCheck.assertClose(db, fdb, rtol: 1e-2, atol: 1e-3, "dbias vs finite differences \(shape)")
  }

  func testGradientCheck2d() throws { try gradientCheck(shape: Shape(3, 4, 3, 2), seed: 10) }

  func testGradientCheck1d() throws { try gradientCheck(shape: Shape(6, 5, 1, 1), seed: 20) }

  func testEvalUsesRunningStatistics() throws {
    let (bn, arena) = makeBN(channels: 2, weight: [2, 1], bias: [0.5, -1])
    arena.set(arena.buffer(named: "bn.running_mean")!, [1, -2])
    arena.set(arena.buffer(named: "bn.running_var")!, [4, 0.25])
    let x = pool.tensor([3, 0, -1, -2], Shape(2, 2, 1, 1))
    let y = try bn.forward(x, training: false).toArray()
    let eps: Float = 1e-5
    let expected: [Float] = [
      2 * (3 - 1) / (4 + eps).squareRoot() + 0.5, 1 * (0 + 2) / (0.25 + eps).squareRoot() - 1,
      2 * (-1 - 1) / (4 + eps).squareRoot() + 0.5, 1 * (-2 + 2) / (0.25 + eps).squareRoot() - 1,
    ]
    NumCheck.assertClose(y, expected, rtol: 1e-6, atol: 0, "eval y")
    // Running statistics are untouched in eval.
    XCTAssertEqual(arena.values(of: arena.buffer(named: "bn.running_mean")!), [1, -2])
    let dx = try bn.backward(pool.tensor([1, 1, 1, 1], Shape(2, 2, 1, 1))).toArray()
    NumCheck.assertClose(
      dx,
      [
        2 / (4 + eps).squareRoot(), 1 / (0.25 + eps).squareRoot(), 2 / (4 + eps).squareRoot(),
        1 / (0.25 + eps).squareRoot(),
      ], rtol: 1e-6, atol: 0, "eval dx")
  }

  func testRejectsWrongChannelsAndSingleValue() {
    let (bn, _) = makeBN(channels: 3)
    let x = pool.tensor([Float](repeating: 1, count: 8), Shape(2, 4, 1, 1))
    XCTAssertThrowsError(try bn.forward(x, training: true))
    let one = pool.tensor([1, 2, 3], Shape(1, 3, 1, 1))
    XCTAssertThrowsError(try bn.forward(one, training: true))
    XCTAssertNoThrow(try bn.forward(one, training: false))
  }

  /// A global batch split over 2 simulated ranks (uneven: 3 + 5 samples) with sync BN gives
  /// the single-rank outputs, input gradients and running statistics, and the ranks'
  /// parameter-gradient contributions sum to the single-rank gradient.
  func testSyncBatchNormSplitOverRanksEqualsOneRank() throws {
    for shape in [Shape(8, 3, 4, 4), Shape(8, 6, 1, 1)] {
      let C = shape.c
      let per = shape.perSample
      let w = NumCheck.random(C, seed: 5, scale: 0.5, offset: 1)
      let b = NumCheck.random(C, seed: 6, scale: 0.5)
      let xs = NumCheck.random(shape.count, seed: 7, scale: 3, offset: 1)
      let dys = NumCheck.random(shape.count, seed: 8)

      let (bn, arena) = makeBN(channels: C, weight: w, bias: b)
      let y = try bn.forward(pool.tensor(xs, shape), training: true).toArray()
      let dx = try bn.backward(pool.tensor(dys, shape)).toArray()
      let dw = arena.gradient(of: arena.parameter(named: "bn.weight")!)
      let db = arena.gradient(of: arena.parameter(named: "bn.bias")!)
      let rm = arena.values(of: arena.buffer(named: "bn.running_mean")!)
      let rv = arena.values(of: arena.buffer(named: "bn.running_var")!)

      let splits = [0..<3, 3..<8]
      let world = SimulatedWorld(size: 2)
      let ranks = try world.run { comm -> ([Float], [Float], [Float], [Float], [Float], [Float]) in
        let rows = splits[comm.rank]
        let local = Shape(rows.count, shape.c, shape.h, shape.w)
        let (sbn, sarena) = self.makeBN(channels: C, weight: w, bias: b, collective: comm)
        let x = self.pool.tensor(Array(xs[rows.lowerBound * per..<rows.upperBound * per]), local)
        let g = self.pool.tensor(Array(dys[rows.lowerBound * per..<rows.upperBound * per]), local)
        let y = try sbn.forward(x, training: true).toArray()
        let dx = try sbn.backward(g).toArray()
        return (
          y, dx, sarena.gradient(of: sarena.parameter(named: "bn.weight")!),
          sarena.gradient(of: sarena.parameter(named: "bn.bias")!),
          sarena.values(of: sarena.buffer(named: "bn.running_mean")!),
          sarena.values(of: sarena.buffer(named: "bn.running_var")!)
        )
      }
      let tol: Float = 1e-5
      XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].0 + ranks[1].0, y), tol, "y \(shape)")
      XCTAssertLessThanOrEqual(
        NumCheck.maxRelative(ranks[0].1 + ranks[1].1, dx), tol, "dx \(shape)")
      XCTAssertLessThanOrEqual(
        NumCheck.maxRelative(zip(ranks[0].2, ranks[1].2).map(+), dw), tol, "dweight \(shape)")
      XCTAssertLessThanOrEqual(
        NumCheck.maxRelative(zip(ranks[0].3, ranks[1].3).map(+), db), tol, "dbias \(shape)")
      for r in 0..<2 {
        XCTAssertLessThanOrEqual(
          NumCheck.maxRelative(ranks[r].4, rm), tol, "running_mean rank \(r)")
        XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[r].5, rv), tol, "running_var rank \(r)")
      }
      // One Double all-reduce per forward and one per backward, same order on both ranks.
      XCTAssertEqual(
        world.log[0], ["allReduceSum(Double, \(1 + 2 * C))", "allReduceSum(Double, \(2 * C))"])
      XCTAssertEqual(world.log[0], world.log[1])
    }
  }

  /// Without sync, the split ranks normalise with local statistics and differ: the sync
  /// test above is not vacuous.
  func testUnsyncedSplitDiffers() throws {
    let shape = Shape(8, 2, 2, 2)
    let per = shape.perSample
    let xs = NumCheck.random(shape.count, seed: 3, scale: 3, offset: 1)
    let (bn, _) = makeBN(channels: 2)
    let y = try bn.forward(pool.tensor(xs, shape), training: true).toArray()
    let (local, _) = makeBN(channels: 2)
    let y0 = try local.forward(
      pool.tensor(Array(xs[0..<3 * per]), Shape(3, 2, 2, 2)), training: true
    ).toArray()
    XCTAssertGreaterThan(NumCheck.maxRelative(y0, Array(y[0..<3 * per])), 1e-2)
  }
}
