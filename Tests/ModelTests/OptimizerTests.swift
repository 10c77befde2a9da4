import Foundation
import XCTest

@testable import Model

final class OptimizerTests: XCTestCase {
  /// An arena with a [10, 6] weight and a [10] bias, as in the `optimizers` fixture.
  private func fixtureArena(_ f: [String: SafeTensors.Entry]) -> ParameterArena {
    let arena = ParameterArena()
    _ = arena.register("w", shape: [10, 6], kind: .weight, initializer: .zeros)
    _ = arena.register("b", shape: [10], kind: .biasOrNorm, initializer: .zeros)
    arena.allocate(seed: 0)
    arena.set(arena.parameter(named: "w")!, f["w0"]!.values)
    arena.set(arena.parameter(named: "b")!, f["bias0"]!.values)
    return arena
  }

  private func setGrads(_ arena: ParameterArena, w: [Float], b: [Float]) {
    let rw = arena.parameter(named: "w")!
    let rb = arena.parameter(named: "b")!
    w.withUnsafeBufferPointer {
      (arena.grads + rw.offset).update(from: $0.baseAddress!, count: w.count)
    }
    b.withUnsafeBufferPointer {
      (arena.grads + rb.offset).update(from: $0.baseAddress!, count: b.count)
    }
  }

  func testSGDMatchesPyTorch() throws {
    let f = try Fixtures.load("optimizers")
    let arena = fixtureArena(f)
    let opt = SGD(parameterCount: arena.parameterCount, momentum: 0.9, weightDecay: 1e-4)
    setGrads(arena, w: f["g1"]!.values, b: f["gbias1"]!.values)
    try opt.step(arena, lr: 0.1)
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "w")!), f["sgd_w1"]!.values, rtol: 1e-6, atol: 1e-7,
      "sgd w1")
    setGrads(arena, w: f["g2"]!.values, b: f["gbias2"]!.values)
    try opt.step(arena, lr: 0.1)
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "w")!), f["sgd_w2"]!.values, rtol: 1e-6, atol: 1e-7,
      "sgd w2")
  }

  func testLARSMatchesReference() throws {
    let f = try Fixtures.load("optimizers")
    let arena = fixtureArena(f)
    let opt = LARS(
      parameterCount: arena.parameterCount, momentum: 0.9, weightDecay: 1e-4,
      trustCoefficient: 0.001)
    setGrads(arena, w: f["g1"]!.values, b: f["gbias1"]!.values)
    try opt.step(arena, lr: 0.1)
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "w")!), f["lars_w1"]!.values, rtol: 1e-6, atol: 1e-7,
      "lars w1")
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "b")!), f["lars_bias1"]!.values, rtol: 1e-6,
      atol: 1e-7, "lars bias1")
    setGrads(arena, w: f["g2"]!.values, b: f["gbias2"]!.values)
    try opt.step(arena, lr: 0.1)
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "w")!), f["lars_w2"]!.values, rtol: 1e-6, atol: 1e-7,
      "lars w2")
    NumCheck.assertClose(
      arena.values(of: arena.parameter(named: "b")!), f["lars_bias2"]!.values, rtol: 1e-6,
      atol: 1e-7, "lars bias2")
  }

  private func smallArena() -> ParameterArena {
    let arena = ParameterArena()
    _ = arena.register("w", shape: [2], kind: .weight, initializer: .zeros)
    _ = arena.register("b", shape: [1], kind: .biasOrNorm, initializer: .zeros)
    arena.allocate(seed: 0)
    return arena
  }

  /// w = (3, 4), g = (0.6, 0.8): ‖w‖ = 5, ‖g‖ = 1, so trust = η·5 = 0.005 at lr 1. The step is
  /// along w, so ‖w‖ becomes 4.995 and the second trust is 0.004995. The bias (excluded)
  /// gets no decay and trust 1.
  func testLARSHandComputed() throws {
    let arena = smallArena()
    arena.set(arena.parameter(named: "w")!, [3, 4])
    arena.set(arena.parameter(named: "b")!, [1])
    setGrads(arena, w: [0.6, 0.8], b: [0.5])
    let opt = LARS(parameterCount: 3, momentum: 0.9, weightDecay: 0, trustCoefficient: 0.001)
    try opt.step(arena, lr: 1)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "w")!)[0], 2.997, accuracy: 1e-6)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "w")!)[1], 3.996, accuracy: 1e-6)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "b")!)[0], 0.5, accuracy: 1e-6)
    try opt.step(arena, lr: 1)
    // v = 0.9·(0.003, 0.004) + 0.004995·(0.6, 0.8) = (0.005697, 0.007596)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "w")!)[0], 2.991303, accuracy: 1e-6)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "w")!)[1], 3.988404, accuracy: 1e-6)
    XCTAssertEqual(opt.momentumBuffer[0], 0.005697, accuracy: 1e-7)
    // Bias: v = 0.9·0.5 + 0.5 = 0.95, b = 0.5 − 0.95.
    XCTAssertEqual(arena.values(of: arena.parameter(named: "b")!)[0], -0.45, accuracy: 1e-6)
    // Weight decay enters the trust ratio: g + wd·w, here with a zero weight (trust 1).
    let z = smallArena()
    setGrads(z, w: [1, 0], b: [0])
    let o2 = LARS(parameterCount: 3, momentum: 0.9, weightDecay: 0.5, trustCoefficient: 0.001)
    try o2.step(z, lr: 0.1)
    XCTAssertEqual(z.values(of: z.parameter(named: "w")!), [-0.1, 0])
  }

  /// g' = g + wd·w; v = m·v + g'; w −= lr·v, on every range (bias included).
  func testSGDHandComputed() throws {
    let arena = smallArena()
    arena.set(arena.parameter(named: "w")!, [1, -2])
    arena.set(arena.parameter(named: "b")!, [1])
    setGrads(arena, w: [0.5, 0.5], b: [0.5])
    let opt = SGD(parameterCount: 3, momentum: 0.9, weightDecay: 0.1)
    try opt.step(arena, lr: 0.1)
    let w1 = arena.values(of: arena.parameter(named: "w")!)
    XCTAssertEqual(w1[0], 0.94, accuracy: 1e-6)
    XCTAssertEqual(w1[1], -2.03, accuracy: 1e-6)
    XCTAssertEqual(arena.values(of: arena.parameter(named: "b")!)[0], 0.94, accuracy: 1e-6)
    try opt.step(arena, lr: 0.1)
    let w2 = arena.values(of: arena.parameter(named: "w")!)
    XCTAssertEqual(w2[0], 0.8266, accuracy: 1e-6)
    XCTAssertEqual(w2[1], -2.0867, accuracy: 1e-6)
    XCTAssertEqual(opt.momentumBuffer[0], 1.134, accuracy: 1e-6)
    XCTAssertEqual(opt.stateNames, ["momentum"])
    XCTAssertEqual(opt.stateBuffer(named: "momentum"), opt.momentumBuffer)
    XCTAssertNil(opt.stateBuffer(named: "exp_avg"))
    // Gradients are read, not modified.
    XCTAssertEqual(arena.gradient(of: arena.parameter(named: "w")!), [0.5, 0.5])
  }

  func testWrongArenaThrows() {
    let opt = SGD(parameterCount: 5)
    XCTAssertThrowsError(try opt.step(smallArena(), lr: 0.1))
  }

  func testWarmupCosineMatchesReference() throws {
    let f = try Fixtures.load("schedule_warmup_cosine")
    let expected = f["lr"]!.values
    XCTAssertEqual(expected.count, 100)
    let s = WarmupCosine(baseLR: 0.3, warmupSteps: 10, totalSteps: 100)
    let got = (0..<100).map { s.lr(at: $0) }
    NumCheck.assertClose(got, expected, rtol: 1e-6, atol: 1e-7, "warm-up cosine")
    XCTAssertEqual(s.lr(at: 0), 0.03, accuracy: 1e-7)
    XCTAssertEqual(s.lr(at: 9), 0.3, accuracy: 1e-7)
    XCTAssertEqual(s.lr(at: 10), 0.3, accuracy: 1e-7)
    XCTAssertEqual(s.lr(at: 55), 0.15, accuracy: 1e-6)
    XCTAssertEqual(s.lr(at: 100), 0, accuracy: 1e-7)
    XCTAssertEqual(s.lr(at: 150), 0, accuracy: 1e-7)
  }

  func testLRScaling() {
    XCTAssertEqual(LRScaling.none.scaled(0.3, globalBatch: 512), 0.3)
    XCTAssertEqual(LRScaling.linear.scaled(0.3, globalBatch: 512), 0.6, accuracy: 1e-7)
    XCTAssertEqual(LRScaling.linear.scaled(0.3, globalBatch: 256), 0.3, accuracy: 1e-7)
    XCTAssertEqual(LRScaling.sqrt.scaled(0.075, globalBatch: 4096), 4.8, accuracy: 1e-6)
    XCTAssertEqual(LRScaling.sqrt.scaled(0.075, globalBatch: 256), 1.2, accuracy: 1e-6)
  }
}
