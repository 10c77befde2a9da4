import Foundation
import Model
import XCTest

/// The autoencoders' reconstruction and embedding losses (issue 15): PyTorch's values,
/// finite differences, and the global mean over simulated ranks.
final class PairLossTests: XCTestCase {
  func testMatchesPyTorch() throws {
    let (t, _) = try SafeTensors.read(Fixtures.directory.appendingPathComponent("embedding_losses.safetensors"))
    let shape = Shape(6, 10)
    for kind in PairLoss.Kind.allCases {
      let loss = PairLoss(kind, collective: LocalCollective())
      let value = try loss.forward(TestData.tensor(shape, t["e1"]!.values), TestData.tensor(shape, t["e2"]!.values))
      XCTAssertEqual(value, t["\(kind)_loss"]!.values[0], accuracy: 1e-6 * max(1, abs(value)), "\(kind)")
      let (da, db) = try loss.backward()
      assertClose(da.toArray(), t["\(kind)_de1"]!.values, tolerance: 1e-5, "\(kind) de1")
      assertClose(db.toArray(), t["\(kind)_de2"]!.values, tolerance: 1e-5, "\(kind) de2")
    }
  }

  func testFiniteDifferences() throws {
    let shape = Shape(3, 5)
    let a = TestData.tensor(shape, TestData.uniform(shape.count, seed: 1))
    let b = TestData.tensor(shape, TestData.uniform(shape.count, seed: 2))
    for kind in PairLoss.Kind.allCases {
      let loss = PairLoss(kind, collective: LocalCollective())
      func value() throws -> Double { Double(try loss.forward(a, b)) }
      _ = try value()
      let (da, db) = try loss.backward()
      let ga = da.toArray(), gb = db.toArray()
      let na = try NumCheck.centralDifferences(a.data, count: shape.count, h: 1e-3) { try value() }
      let nb = try NumCheck.centralDifferences(b.data, count: shape.count, h: 1e-3) { try value() }
      NumCheck.assertClose(ga, na, rtol: 2e-3, atol: 2e-3, "\(kind) da")
      NumCheck.assertClose(gb, nb, rtol: 2e-3, atol: 2e-3, "\(kind) db")
    }
  }

  /// Two simulated ranks holding 2 and 2 of 4 rows give the 4-row loss and its rows' gradients.
  func testGlobalBatchMean() throws {
    let shape = Shape(4, 6)
    let a = TestData.uniform(shape.count, seed: 5), b = TestData.uniform(shape.count, seed: 6)
    for kind in PairLoss.Kind.allCases {
      let whole = PairLoss(kind, collective: LocalCollective())
      let v = try whole.forward(TestData.tensor(shape, a), TestData.tensor(shape, b))
      let g = try whole.backward().0.toArray()
      let world = SimulatedWorld(size: 2)
      let parts = try world.run { c -> (Float, [Float]) in
        let half = Shape(2, 6), o = c.rank * 12
        let l = PairLoss(kind, collective: c)
        let value = try l.forward(TestData.tensor(half, Array(a[o..<(o + 12)])), TestData.tensor(half, Array(b[o..<(o + 12)])))
        return (value, try l.backward().0.toArray())
      }
      for p in parts { XCTAssertEqual(p.0, v, accuracy: 1e-6, "\(kind)") }
      assertClose(parts[0].1 + parts[1].1, g, tolerance: 1e-6, "\(kind) gradient rows")
    }
  }
}
