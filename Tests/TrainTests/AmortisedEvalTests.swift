import Data
import Model
import Train
import XCTest

/// In-process checks of the amortised method and of `eval amortised`'s joint fit.
final class AmortisedEvalTests: XCTestCase {
  func config() -> PretrainConfig {
    var c = PretrainConfig()
    c.method = .amortised
    c.model = .conv4
    c.seed = 2
    c.projectionDim = 16
    return c
  }

  /// The training step encodes each row with the batch's own v (v = 0 and v = 1 give other
  /// losses), and the encoder is back at the default v = 1 afterwards (probes, export).
  func testStepUsesTheBatchsInvarianceVectors() throws {
    let b = 4
    let x = Storage(2 * b * 784)
    let values = TestDataValues.uniform(2 * b * 784, seed: 3)
    for i in 0..<values.count { x.data[i] = values[i] }
    var losses: [Float] = []
    for value: Float in [0, 1] {
      let method = try AmortisedMethod(config: config(), collective: LocalCollective())
      let v = [Float](repeating: value, count: 2 * b * 2)
      let loss = try v.withUnsafeBufferPointer {
        try method.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: $0.baseAddress!), lossScale: 1)
      }
      losses.append(loss.total)
      XCTAssertEqual(method.conditioned.invarianceValues, method.defaultInvariance)
    }
    XCTAssertGreaterThan(abs(losses[0] - losses[1]), 1e-4, "v = 0 and v = 1 gave the same loss \(losses)")
    // No invariance vectors: a clear error, not a silent default.
    let method = try AmortisedMethod(config: config(), collective: LocalCollective())
    XCTAssertThrowsError(
      try method.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: nil), lossScale: 1)
    ) { XCTAssertTrue("\($0)".contains("no invariance vectors"), "\($0)") }
  }

  /// The MoCo objective conditions both the queries (view-1 rows of v) and the keys (view-2
  /// rows): changing either half of v alone changes the loss; a batch without v is an error,
  /// and the encoder is at v = 1 after the step.
  func testMoCoObjectiveConditionsQueriesAndKeys() throws {
    var c = config()
    c.amortisedObjective = .moco
    c.queueSize = 32
    let b = 4
    let x = Storage(2 * b * 784)
    let values = TestDataValues.uniform(2 * b * 784, seed: 3)
    for i in 0..<values.count { x.data[i] = values[i] }
    func loss(query: Float, key: Float) throws -> Float {
      let method = try Methods.make(c, collective: LocalCollective())
      XCTAssertTrue(method is MoCoMethod)
      let v = [Float](repeating: query, count: b * 2) + [Float](repeating: key, count: b * 2)
      let l = try v.withUnsafeBufferPointer {
        try method.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: $0.baseAddress!), lossScale: 1)
      }
      let conditioned = try XCTUnwrap(method.encoder as? ConditionedConv4)
      XCTAssertEqual(conditioned.invarianceValues, [1, 1])
      XCTAssertThrowsError(
        try method.forwardBackward(MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: nil), lossScale: 1))
      return l.total
    }
    let base = try loss(query: 1, key: 1)
    XCTAssertGreaterThan(abs(try loss(query: 0, key: 1) - base), 1e-5, "the queries ignore v")
    XCTAssertGreaterThan(abs(try loss(query: 1, key: 0) - base), 1e-5, "the keys ignore v")
    XCTAssertEqual(try loss(query: 1, key: 1), base, "deterministic")
  }

  /// With the head all but frozen (lr 1e-12) and the whole training set as one batch, each
  /// epoch is one Adam step on u alone: the training loss after six steps must be below the
  /// start (not monotone: Adam at lr 0.05 overshoots, measured 0.6886 → 0.6861 → 0.6867 … 0.6860).
  func testJointFitDescendsInV() throws {
    let method = try AmortisedMethod(config: config(), collective: LocalCollective())
    let train = MemoryEvalSource(count: 64, seed: 5)
    var s = AmortisedEval.Settings()
    s.epochs = 6
    s.batch = 64
    s.headLR = 1e-12
    s.invarianceLR = 0.05
    let learned = try AmortisedEval.learn(
      encoder: method.conditioned, arena: method.arena, train: train, test: train, classes: 2, settings: s)
    XCTAssertEqual(learned.losses.count, 6)
    XCTAssertEqual(learned.trajectory.first, [0.5, 0.5])
    XCTAssertLessThan(learned.losses.last!, learned.losses.first!, "losses \(learned.losses), v \(learned.trajectory)")
    XCTAssertNotEqual(learned.v, [0.5, 0.5])
  }

  func testCornersAreEveryBinaryVector() {
    XCTAssertEqual(AmortisedEval.corners(2), [[0, 0], [1, 0], [0, 1], [1, 1]])
    XCTAssertEqual(Set(AmortisedEval.corners(3)).count, 8)
  }

  /// The task views: rotation turns the image by the keyed quarter (the same draw on both
  /// calls), brightness darkens to 0.7 on the pixel scale, coarse maps the ten classes.
  func testTaskSources() throws {
    let base = MemoryEvalSource(count: 32, seed: 9, side: 4)
    let rot = try TaskEvalSource(base, task: .rotation, seed: 1, split: 0, mean: 0.5, std: 0.25)
    var plain = [Float](repeating: 0, count: 16), turned = plain
    var quarters = Set<Int>()
    for i in 0..<32 {
      try base.load(indices: [i], into: &plain)
      try rot.load(indices: [i], into: &turned)
      let q = rot.label(i, slot: 0)
      quarters.insert(q)
      // One quarter counter-clockwise: out(y, x) = in(x, side − 1 − y).
      var expected = plain
      for _ in 0..<q {
        let prev = expected
        for y in 0..<4 { for x in 0..<4 { expected[y * 4 + x] = prev[x * 4 + (3 - y)] } }
      }
      XCTAssertEqual(turned, expected, "sample \(i), quarter \(q)")
    }
    XCTAssertEqual(quarters, [0, 1, 2, 3])
    let dark = try TaskEvalSource(base, task: .brightness, seed: 1, split: 0, mean: 0.5, std: 0.25)
    var seen = Set<Int>()
    for i in 0..<32 {
      try base.load(indices: [i], into: &plain)
      try dark.load(indices: [i], into: &turned)
      let l = dark.label(i, slot: 0)
      seen.insert(l)
      for j in 0..<16 {
        let expected = l == 1 ? (0.7 * (plain[j] * 0.25 + 0.5) - 0.5) / 0.25 : plain[j]
        XCTAssertEqual(turned[j], expected, accuracy: 1e-5)
      }
    }
    XCTAssertEqual(seen, [0, 1])
    // The test split draws apart from the train split.
    let rotTest = try TaskEvalSource(base, task: .rotation, seed: 1, split: 1, mean: 0.5, std: 0.25)
    XCTAssertNotEqual((0..<32).map { rot.label($0, slot: 0) }, (0..<32).map { rotTest.label($0, slot: 0) })
    XCTAssertThrowsError(try TaskEvalSource(base, task: .coarse, seed: 1, split: 0, mean: 0.5, std: 0.25)) {
      XCTAssertTrue("\($0)".contains("--task coarse"), "\($0)")
    }
  }
}

enum TestDataValues {
  static func uniform(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in rng.nextUnitFloat() * 2 - 1 }
  }
}

/// Random one-channel images with a label that depends on their mean (two classes).
final class MemoryEvalSource: EvalSource {
  let count: Int
  let side: Int
  let values: [Float]
  init(count: Int, seed: UInt64, side: Int = 28) {
    self.count = count
    self.side = side
    values = TestDataValues.uniform(count * side * side, seed: seed)
  }
  var inputShape: InputShape { InputShape(channels: 1, height: side, width: side) }
  var labelSlots: [LabelSlot] { [LabelSlot(name: "class", classNames: ["a", "b"])] }
  func label(_ i: Int, slot: Int) -> Int {
    let n = side * side
    return values[(i * n)..<((i + 1) * n)].reduce(0, +) > 0 ? 1 : 0
  }
  func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    let n = side * side
    for (row, i) in indices.enumerated() {
      values.withUnsafeBufferPointer { (x + row * n).update(from: $0.baseAddress! + i * n, count: n) }
    }
  }
}
