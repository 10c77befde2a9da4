import Foundation
import XCTest

@testable import Model

final class InfoNCEQueueLossTests: XCTestCase {
  let pool = TensorPool()

  /// PyTorch: logits [q·k, q·queueᵀ]/0.2 on normalised rows, target 0, mean over 8 queries,
  /// a queue of 32; k and the queue constant.
  func testMatchesPyTorch() throws {
    let f = try Fixtures.load("moco_infonce_queue")
    let s = Shape(f["q"]!.shape[0], f["q"]!.shape[1])
    let queue = f["queue"]!
    let loss = InfoNCEQueueLoss(temperature: 0.2, collective: LocalCollective())
    let l = try loss.forward(
      q: pool.tensor(f["q"]!.values, s), k: pool.tensor(f["k"]!.values, s),
      queue: pool.tensor(queue.values, Shape(queue.shape[0], queue.shape[1])).data, queueCount: queue.shape[0])
    XCTAssertEqual(l, f["loss"]!.values[0], accuracy: 1e-5 * abs(f["loss"]!.values[0]))
    let dq = try loss.backward()
    NumCheck.assertClose(dq.toArray(), f["dq"]!.values, rtol: 1e-4, atol: 1e-5, "dq")
    // The keys it keeps for the queue are k's rows normalised.
    let kh = loss.normalizedKeys.toArray()
    for i in 0..<s.n {
      let row = kh[i * s.c..<(i + 1) * s.c]
      XCTAssertEqual(row.reduce(0) { $0 + Double($1) * Double($1) }, 1, accuracy: 1e-5)
    }
  }

  /// Central differences (h = 1e-3) on q, keys and queue fixed.
  func testGradientCheck() throws {
    let B = 3
    let D = 5
    let K = 7
    let s = Shape(B, D)
    let q = pool.tensor(NumCheck.random(B * D, seed: 61), s)
    let k = pool.tensor(NumCheck.random(B * D, seed: 62), s)
    let queue = pool.tensor(NumCheck.random(K * D, seed: 63), Shape(K, D))
    let loss = InfoNCEQueueLoss(temperature: 0.5, collective: LocalCollective())
    _ = try loss.forward(q: q, k: k, queue: queue.data, queueCount: K)
    let g = try loss.backward().toArray()
    let fd = try NumCheck.centralDifferences(q.data, count: B * D, h: 1e-3) {
      Double(try loss.forward(q: q, k: k, queue: queue.data, queueCount: K))
    }
    NumCheck.assertClose(g, fd, rtol: 1e-2, atol: 1e-3, "dq vs finite differences")
  }

  /// 8 queries split 3 + 5 over 2 simulated ranks with the same queue: the global mean loss
  /// and each rank's rows of one rank's gradient.
  func testSplitOverRanksEqualsOneRank() throws {
    let B = 8
    let D = 6
    let K = 10
    let qv = NumCheck.random(B * D, seed: 71)
    let kv = NumCheck.random(B * D, seed: 72)
    let queue = pool.tensor(NumCheck.random(K * D, seed: 73), Shape(K, D))
    let single = InfoNCEQueueLoss(temperature: 0.2, collective: LocalCollective())
    let l = try single.forward(q: pool.tensor(qv, Shape(B, D)), k: pool.tensor(kv, Shape(B, D)), queue: queue.data, queueCount: K)
    let dq = try single.backward().toArray()
    let splits = [0..<3, 3..<8]
    let ranks = try SimulatedWorld(size: 2).run { comm -> (Float, [Float]) in
      let rows = splits[comm.rank]
      func part(_ a: [Float]) -> Tensor {
        self.pool.tensor(Array(a[rows.lowerBound * D..<rows.upperBound * D]), Shape(rows.count, D))
      }
      let loss = InfoNCEQueueLoss(temperature: 0.2, collective: comm)
      let value = try loss.forward(q: part(qv), k: part(kv), queue: queue.data, queueCount: K)
      return (value, try loss.backward().toArray())
    }
    for r in 0..<2 { XCTAssertEqual(ranks[r].0, l, accuracy: 1e-5 * abs(l)) }
    XCTAssertLessThanOrEqual(NumCheck.maxRelative(ranks[0].1 + ranks[1].1, dq), 1e-5)
  }
}
