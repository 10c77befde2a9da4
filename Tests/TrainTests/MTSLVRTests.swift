import Foundation
import Model
import XCTest

@testable import Train

/// Issue 7: SimSiam, transformation prediction and MT-SLVR.
final class MTSLVRTests: XCTestCase {
  func config(_ method: String, _ edit: (inout PretrainConfig) -> Void = { _ in }) -> PretrainConfig {
    var c = PretrainConfig()
    c.method = Method(rawValue: method)!
    c.model = .conv4
    c.seed = 5
    edit(&c)
    return c
  }

  /// x [2B, 1, 28, 28] and multi-hot labels [2B, 5], fixed.
  func batch(_ b: Int) -> (Storage, Storage) {
    let x = Storage(2 * b * 784)
    var rng = SplitMix64(seed: 9)
    for i in 0..<(2 * b * 784) { x.data[i] = rng.nextUnitFloat() * 2 - 1 }
    let t = Storage(2 * b * 5)
    for i in 0..<(2 * b * 5) { t.data[i] = rng.nextUnitFloat() < 0.5 ? 1 : 0 }
    return (x, t)
  }

  /// One forward/backward; the gradients by name.
  func gradients(_ c: PretrainConfig, b: Int = 6) throws -> (Float, [String: [Float]]) {
    let m = try Methods.make(c, collective: LocalCollective())
    let (x, t) = batch(b)
    m.arena.zeroGrads()
    let loss = try m.forwardBackward(
      MethodBatch(views: Tensor(x.data, Shape(2 * b, 1, 28, 28)), transforms: t.data), lossScale: 1
    ).total
    var g: [String: [Float]] = [:]
    for r in m.arena.parameterRanges { g[r.name] = m.arena.gradient(of: r) }
    return (loss, g)
  }

  /// With adapters `none` and w = 0, MT-SLVR's update is its contrastive method's: same
  /// loss, and bit-identical gradients on every parameter the two share (same names, same
  /// initial values); the predictive head receives none.
  func testNoAdaptersZeroWeightIsContrastiveMethod() throws {
    for branch in ["simclr", "simsiam"] {
      let (l0, g0) = try gradients(config(branch))
      let (l1, g1) = try gradients(config("mtslvr") { $0.adapter = .none; $0.predWeight = 0; $0.contrastive = ContrastiveBranch(rawValue: branch)! })
      XCTAssertEqual(l0, l1, branch)
      XCTAssertEqual(Set(g0.keys).subtracting(g1.keys), [], branch)
      for (name, g) in g0 { XCTAssertEqual(g1[name], g, "\(branch): \(name)") }
      for (name, g) in g1 where name.hasPrefix("transform_head") {
        XCTAssertEqual(g.map(abs).max(), 0, name)
      }
      // And w > 0 does change the encoder's gradient (the test can fail).
      let (_, g2) = try gradients(config("mtslvr") { $0.adapter = .none; $0.predWeight = 1; $0.contrastive = ContrastiveBranch(rawValue: branch)! })
      XCTAssertNotEqual(g2["encoder.0.weight"], g0["encoder.0.weight"])
    }
  }

  /// Per-task gradients of the shared parameters (what gradient-combination methods get): the
  /// two tasks' rows sum to the fused backward's shared gradient, each is the gradient of its
  /// own term (the predictive row vanishes at w = 0 and not otherwise), and the task-specific
  /// gradients are the fused ones.
  func testPerTaskGradientsSumToTheFusedGradient() throws {
    for adapter in [AdapterMode.none, .parallel] {
      for w: Float in [0.7, 0] {
        let c = config("mtslvr") { $0.adapter = adapter; $0.predWeight = w }
        let (fusedLoss, fused) = try gradients(c)
        let m = try Methods.make(c, collective: LocalCollective()) as! MTSLVRMethod
        let (x, t) = batch(6)
        m.arena.zeroGrads()
        let shared = m.sharedRanges
        XCTAssertFalse(shared.isEmpty)
        XCTAssertTrue(shared.allSatisfy { $0.name.hasPrefix("encoder.") })
        let tg = TaskGradients(tasks: 2, sharedRanges: shared)
        let losses = try m.forwardBackwardPerTask(
          MethodBatch(views: Tensor(x.data, Shape(12, 1, 28, 28)), transforms: t.data), lossScale: 1, into: tg)
        XCTAssertEqual(losses.total, fusedLoss, "\(adapter) w \(w)")
        var offset = 0
        var predictiveNorm: Float = 0
        var contrastiveNorm: Float = 0
        for r in shared {
          let f = fused[r.name]!
          for i in 0..<r.count {
            let a = tg.task(0)[offset + i], b = tg.task(1)[offset + i]
            contrastiveNorm += a * a
            predictiveNorm += b * b
            XCTAssertEqual(a + b, f[i], accuracy: 1e-5 * max(1, abs(f[i])), "\(adapter) \(r.name)[\(i)]")
          }
          XCTAssertEqual(m.arena.gradient(of: r).map(abs).max(), 0, "shared gradient left in the arena: \(r.name)")
          offset += r.count
        }
        XCTAssertGreaterThan(contrastiveNorm, 0)
        if w == 0 { XCTAssertEqual(predictiveNorm, 0, "\(adapter)") } else { XCTAssertGreaterThan(predictiveNorm, 0, "\(adapter)") }
        let sharedNames = Set(shared.map(\.name))
        for r in m.arena.parameterRanges where !sharedNames.contains(r.name) {
          let g = m.arena.gradient(of: r)
          for (i, v) in g.enumerated() {
            XCTAssertEqual(v, fused[r.name]![i], accuracy: 1e-6 * max(1, abs(v)), "\(adapter) \(r.name)[\(i)]")
          }
        }
      }
    }
  }

  /// The downstream encoder of an adapted MT-SLVR outputs both tasks' features.
  func testAdaptedEncoderConcatenatesTasks() throws {
    for adapter in [AdapterMode.bn, .series, .parallel] {
      let m = try Methods.make(config("mtslvr") { $0.adapter = adapter }, collective: LocalCollective())
      XCTAssertEqual(m.encoder.featureDim, 128, adapter.rawValue)
      XCTAssertEqual(m.encoder.prePoolDim, 2 * 576, adapter.rawValue)
      let counts = (m as! MTSLVRMethod).parameterCounts()
      XCTAssertEqual(counts.shared + counts.contrastive + counts.predictive, m.arena.parameterCount)
    }
    let none = try Methods.make(config("mtslvr") { $0.adapter = .none }, collective: LocalCollective())
    XCTAssertEqual(none.encoder.featureDim, 64)
  }

  /// On non-square log-mel inputs (16 mels × 17 frames) the adapted resnet18 reports the
  /// pre-pool size its forward pass really produces (2 tasks × 512 × 2 × 3).
  func testAdaptedResNet18PrePoolDimOnLogMel() throws {
    let c = config("mtslvr") {
      $0.model = .resnet18; $0.adapter = .parallel; $0.data = .spokenDigits; $0.frontEnd = .logmel
      $0.audioLength = 4000; $0.nFFT = 256; $0.hop = 250; $0.nMels = 16
    }
    XCTAssertEqual(c.sampleShape, Shape(1, 1, 16, 17))
    let m = try Methods.make(c, collective: LocalCollective())
    let x = Storage(2 * 16 * 17)
    for i in 0..<(2 * 16 * 17) { x.data[i] = Float(i % 7) - 3 }
    _ = try m.encoder.forward(Tensor(x.data, Shape(2, 1, 16, 17)), training: true)
    XCTAssertEqual(m.encoder.prePoolDim, 2 * 512 * 2 * 3)
    XCTAssertEqual(m.encoder.prePoolFeatures?.shape.perSample, m.encoder.prePoolDim)
  }

  /// Finite differences of the composed loss `L_c + w·L_p` (SimCLR branch and transformation
  /// prediction on the same features) with respect to the features and both heads.
  func testComposedLossGradients() throws {
    let w: Float = 0.7
    let c = config("mtslvr") { $0.syncBN = false; $0.projectionDim = 4 }
    let arena = ParameterArena()
    let contrastive = SimCLRBranch(arena: arena, inFeatures: 5, config: c, collective: LocalCollective())
    let predictive = TransformPredictionBranch(arena: arena, inFeatures: 5, labelCount: 5, config: c, collective: LocalCollective())
    arena.allocate(seed: 3)
    let (hs, ts) = (Storage(8 * 5), Storage(8 * 5))
    var rng = SplitMix64(seed: 4)
    for i in 0..<40 {
      hs.data[i] = rng.nextUnitFloat() * 2 - 1
      ts.data[i] = rng.nextUnitFloat() < 0.5 ? 1 : 0
    }
    let h = Tensor(hs.data, Shape(8, 5))
    func loss() throws -> Double {
      Double(try contrastive.forward(h, labels: nil)) + Double(w) * Double(try predictive.forward(h, labels: ts.data))
    }
    arena.zeroGrads()
    _ = try loss()
    let dp = try predictive.backward(scale: w).toArray()
    let dc = try contrastive.backward(scale: 1).toArray()
    let dh = zip(dp, dc).map { $0 + $1 }
    let eps: Float = 1e-3
    func numeric(_ p: UnsafeMutablePointer<Float>, _ i: Int) throws -> Float {
      let v = p[i]
      p[i] = v + eps
      let up = try loss()
      p[i] = v - eps
      let down = try loss()
      p[i] = v
      return Float((up - down) / Double(2 * eps))
    }
    // Float rounding of L over a 2·10⁻³ step leaves ~10⁻³ of noise; a ReLU kink inside the
    // step would show as a large error.
    func check(_ a: Float, _ n: Float, _ what: String) {
      XCTAssertEqual(a, n, accuracy: max(2e-3, 1e-2 * abs(n)), what)
    }
    for i in 0..<40 { check(dh[i], try numeric(hs.data, i), "dh[\(i)]") }
    for r in arena.parameterRanges {
      let g = arena.gradient(of: r)
      for i in 0..<r.count { check(g[i], try numeric(arena.params + r.offset, i), "\(r.name)[\(i)]") }
    }
  }

  /// Image views carry the multi-hot labels; under MT-SLVR sampling both views share them and
  /// each has 1…5 augmentations.
  func testImageLabelsSharedByViews() throws {
    var c = config("mtslvr")
    c.maxSteps = 1
    let src = try ViewSources.make(c, globalBatch: 16, rank: 0, worldSize: 1)
    XCTAssertEqual(src.transformCount, 5)
    let x = Storage(src.batchShape.count)
    let t = Storage(32 * 5)
    try src.load(epoch: 0, batch: 0, into: x.data, transforms: t.data)
    var sizes = Set<Int>()
    var identical = 0
    for row in 0..<16 {
      let a = (0..<5).map { t.data[row * 5 + $0] }
      let b = (0..<5).map { t.data[(16 + row) * 5 + $0] }
      XCTAssertEqual(a, b)
      let k = Int(a.reduce(0, +))
      XCTAssertTrue((1...5).contains(k))
      sizes.insert(k)
      // Each view draws its own parameters (a flip alone is the same for both).
      if Array(UnsafeBufferPointer(start: x.data + row * 784, count: 784))
        == Array(UnsafeBufferPointer(start: x.data + (16 + row) * 784, count: 784))
      {
        identical += 1
        XCTAssertEqual(a, [0, 1, 0, 0, 0])
      }
    }
    XCTAssertLessThan(identical, 8)
    XCTAssertGreaterThan(sizes.count, 2)
    // SimCLR sampling reports per view, and views differ in what they received.
    let s = try ViewSources.make(config("simclr"), globalBatch: 16, rank: 0, worldSize: 1)
    try s.load(epoch: 0, batch: 0, into: x.data, transforms: t.data)
    var differ = false
    for row in 0..<16 where (0..<5).contains(where: { t.data[row * 5 + $0] != t.data[(16 + row) * 5 + $0] }) { differ = true }
    XCTAssertTrue(differ)
  }

  // MARK: W ranks ≡ 1 rank (mpirun)

  /// One step (see `RankInvarianceTests` for why one).
  func pretrain(np: Int, name: String, _ extra: [String]) throws -> [String: SafeTensors.Entry] {
    try RankInvariance.pretrain(np: np, globalBatch: 32, name: name, extra)
  }

  func assertRankInvariant(_ extra: [String], _ name: String) throws {
    let one = try pretrain(np: 1, name: "\(name)-w1", extra)
    let two = try pretrain(np: 2, name: "\(name)-w2", extra)
    let (rel, worst) = relativeDifference(one, two, floor: 1e-4)
    XCTAssertLessThanOrEqual(rel, 1e-4, "\(name): worst tensor \(worst)")
    // The step moved the parameters.
    let fresh = try pretrain(np: 1, name: "\(name)-lr", extra + ["--base-lr", "0.6"])
    XCTAssertGreaterThan(relativeDifference(one, fresh, floor: 1e-4).0, 1e-3)
  }

  func testMTSLVRParallelTwoRanksMatchOneRank() throws {
    try assertRankInvariant(["--method", "mtslvr", "--adapter", "parallel"], "mtslvr-parallel")
  }

  func testSimSiamTwoRanksMatchOneRank() throws {
    try assertRankInvariant(["--method", "simsiam"], "simsiam")
  }
}
