import Data
import Dist
import Foundation
import Model

/// A downstream task of `eval amortised` on an image set: the dataset's classes, or a
/// task made from them whose invariance needs differ.
public enum AmortisedTask: String, OptionChoice {
  /// The dataset's own classes.
  case `class`
  /// Fashion-MNIST's three kinds: clothing (T-shirt, trouser, pullover, dress, coat, shirt),
  /// footwear (sandal, sneaker, ankle boot), bag.
  case coarse
  /// Which of 0°, 90°, 180°, 270° the image was rotated by (per sample, keyed): a spatial task.
  case rotation
  /// Whether the image was darkened to 0.7 of its intensity (per sample, keyed): an
  /// appearance task.
  case brightness

  public var classNames: [String]? {
    switch self {
    case .class: nil
    case .coarse: ["clothing", "footwear", "bag"]
    case .rotation: ["0", "90", "180", "270"]
    case .brightness: ["original", "darkened"]
    }
  }
}

/// The clean inputs of a split as a task sees them: the task's transformation applied and its
/// labels in slot 0. Per-sample draws come from `KeyedRandom(seed, split, i, .evaluation)`.
public final class TaskEvalSource: EvalSource {
  public let base: EvalSource
  public let task: AmortisedTask
  let seed: UInt64
  let split: Int
  /// Normalisation of one-channel inputs (the brightness task works on the pixel scale).
  let mean: Float, std: Float
  public let count: Int
  private var scratch = [Float]()

  /// - Parameters:
  ///   - split: 0 train, 1 test (part of the draws' key, so the two splits draw apart).
  ///   - limit: only the first `limit` samples (nil: all).
  ///   - mean, std: the one-channel normalisation of the inputs (the brightness task).
  public init(
    _ base: EvalSource, task: AmortisedTask, seed: UInt64, split: Int, limit: Int? = nil, mean: Float, std: Float
  ) throws {
    let s = base.inputShape
    if task == .rotation, s.height != s.width {
      throw ConfigError(message: "--task rotation needs square inputs, the data's are \(s.height)×\(s.width)")
    }
    if task == .coarse, base.labelSlots.first?.classNames != FashionMNIST.classNames {
      throw ConfigError(message: "--task coarse is defined on Fashion-MNIST's ten classes; this data's are \(base.labelSlots.first?.classNames ?? [])")
    }
    if task == .brightness, s.channels != 1 {
      throw ConfigError(message: "--task brightness is defined on one-channel images, the data has \(s.channels) channels")
    }
    self.base = base
    count = min(base.count, limit ?? base.count)
    self.task = task
    self.seed = seed
    self.split = split
    self.mean = mean
    self.std = std
  }

  public var inputShape: InputShape { base.inputShape }
  public var labelSlots: [LabelSlot] {
    [LabelSlot(name: task.rawValue, classNames: task.classNames ?? base.labelSlots[0].classNames)]
  }

  /// The per-sample draw: the rotation quarter (0…3) or darkened (0/1).
  func draw(_ i: Int) -> Int {
    var rng = KeyedRandom(seed: seed, epoch: split, sample: i, purpose: .evaluation)
    switch task {
    case .rotation: return rng.nextInt(below: 4)
    case .brightness: return rng.bernoulli(0.5) ? 1 : 0
    case .class, .coarse: return 0
    }
  }

  public func label(_ i: Int, slot: Int) -> Int {
    switch task {
    case .class: return base.label(i, slot: 0)
    case .coarse:
      switch base.label(i, slot: 0) {
      case 5, 7, 9: return 1
      case 8: return 2
      default: return 0
      }
    case .rotation, .brightness: return draw(i)
    }
  }

  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    let list = Array(indices)
    try base.load(indices: list, into: x)
    let s = inputShape
    let n = s.count
    for (row, i) in list.enumerated() {
      let p = x + row * n
      switch task {
      case .class, .coarse: break
      case .rotation:
        let q = draw(i)
        guard q > 0 else { continue }
        if scratch.count < n { scratch = [Float](repeating: 0, count: n) }
        let side = s.height
        let plane = side * side
        scratch.withUnsafeMutableBufferPointer { t in
          for c in 0..<s.channels {
            let src = p + c * plane
            let dst = t.baseAddress! + c * plane
            for y in 0..<side {
              for xx in 0..<side {
                // Counter-clockwise by q quarters: out(y, x) = in(rotate⁻¹(y, x)).
                let (sy, sx): (Int, Int)
                switch q {
                case 1: (sy, sx) = (xx, side - 1 - y)
                case 2: (sy, sx) = (side - 1 - y, side - 1 - xx)
                default: (sy, sx) = (side - 1 - xx, y)
                }
                dst[y * side + xx] = src[sy * side + sx]
              }
            }
          }
          p.update(from: t.baseAddress!, count: n)
        }
      case .brightness:
        guard draw(i) == 1 else { continue }
        // Pixel p = x·std + mean on [0, 1]; darkened p' = 0.7·p.
        for j in 0..<n { p[j] = (0.7 * (p[j] * std + mean) - mean) / std }
      }
    }
  }
}

/// One label slot of an evaluation source as its slot 0, over its first `limit` samples: an
/// audio label (word, language, voice, gender) as a task of `eval amortised`.
public final class SlotEvalSource: EvalSource {
  public let base: EvalSource
  public let slot: Int
  public let count: Int

  public init(_ base: EvalSource, slot: Int, limit: Int? = nil) {
    precondition(base.labelSlots.indices.contains(slot), "no label slot \(slot)")
    self.base = base
    self.slot = slot
    count = min(base.count, limit ?? base.count)
  }

  public var inputShape: InputShape { base.inputShape }
  public var labelSlots: [LabelSlot] { [base.labelSlots[slot]] }
  public func label(_ i: Int, slot _: Int) -> Int { base.label(i, slot: slot) }
  public func load<S: Sequence>(indices: S, into x: UnsafeMutablePointer<Float>) throws where S.Element == Int {
    try base.load(indices: indices, into: x)
  }
}

/// `eval amortised`: learn the invariance vector of a task by gradient descent through the
/// frozen conditioned encoder, jointly with a linear head.
public enum AmortisedEval {
  /// What the joint fit found.
  public struct Learned {
    /// The learned v = σ(u), and its trajectory every epoch (first entry: the start, 0.5).
    public var v: [Float]
    public var trajectory: [[Float]]
    /// Mean training cross-entropy of each epoch's batches (each before its update).
    public var losses: [Double]
    /// Test accuracy of the jointly learned head at the learned v.
    public var jointAccuracy: Double
    public var seconds: Double
  }

  /// Settings of the joint fit.
  public struct Settings {
    public var epochs = 3
    public var batch = 256
    /// SGD (momentum 0.9, cosine) on the head.
    public var headLR: Float = 0.1
    /// Adam on u, v = σ(u).
    public var invarianceLR: Float = 0.05
    public var seed: UInt64 = 0
    public init() {}
  }

  /// Fits u ∈ ℝ^k (v = σ(u), u = 0 at the start, so v = 0.5) and a linear head on the pooled
  /// features of `encoder` by minibatch gradient descent on softmax cross-entropy over
  /// `train`: the head by SGD, u by Adam, with dL/dv from `ConditionedConv4.backward` through
  /// the frozen encoder (BN in inference mode; the encoder's own weight gradients are
  /// discarded). Features are standardised with the mean and std of the training features at
  /// the start (v = 0.5), held fixed. Then scores the head on `test` at the learned v.
  public static func learn(
    encoder: ConditionedConv4, arena encoderArena: ParameterArena, train: EvalSource, test: EvalSource,
    classes: Int, settings: Settings
  ) throws -> Learned {
    let t0 = Date()
    let k = encoder.invarianceDim
    var u = [Float](repeating: 0, count: k)
    func sigmoid(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }
    var v: [Float] { u.map(sigmoid) }
    let s = train.inputShape
    let batch = min(settings.batch, train.count)
    let input = Storage(batch * s.count)

    // Standardisation at v = 0.5: per-dimension mean and std of the training features.
    encoder.setInvariance(v)
    var d = 0
    var sum = [Double](), sumSq = [Double]()
    var lo = 0
    while lo < train.count {
      let n = min(batch, train.count - lo)
      try train.load(indices: lo..<(lo + n), into: input.data)
      let h = try encoder.forward(Tensor(input.data, Shape(n, s.channels, s.height, s.width)), training: false)
      if d == 0 {
        d = h.shape.perSample
        sum = [Double](repeating: 0, count: d)
        sumSq = sum
      }
      for r in 0..<n {
        for j in 0..<d {
          let x = Double(h.data[r * d + j])
          sum[j] += x
          sumSq[j] += x * x
        }
      }
      lo += n
    }
    var shift = [Float](repeating: 0, count: d)
    var scale = [Float](repeating: 1, count: d)
    let n0 = Double(train.count)
    for j in 0..<d {
      let m = sum[j] / n0
      shift[j] = Float(m)
      scale[j] = Float(1 / ((max(sumSq[j] / n0 - m * m, 0)).squareRoot() + 1e-6))
    }

    let arena = ParameterArena()
    let fc = Linear(arena: arena, name: "fc", inFeatures: d, outFeatures: classes)
    arena.allocate(seed: settings.seed)
    let opt = SGD(parameterCount: arena.parameterCount, momentum: 0.9, weightDecay: 1e-4)
    let perEpoch = train.count / batch
    let schedule = WarmupCosine(baseLR: settings.headLR, warmupSteps: 0, totalSteps: settings.epochs * perEpoch)
    let z = Storage(batch * d)
    let dlogits = Storage(batch * classes)
    let dh = Storage(batch * d)
    var labels = [Int](repeating: 0, count: batch)
    var order = Array(0..<train.count)
    var rng = SplitMix64(seed: settings.seed)
    // Adam state of u.
    var m1 = [Float](repeating: 0, count: k), m2 = [Float](repeating: 0, count: k)
    let (b1, b2): (Float, Float) = (0.9, 0.999)
    var step = 0
    var trajectory = [v]
    var losses: [Double] = []
    for _ in 0..<settings.epochs {
      order.shuffle(using: &rng)
      var epochLoss = 0.0
      for b in 0..<perEpoch {
        let idx = Array(order[(b * batch)..<((b + 1) * batch)])
        try train.load(indices: idx, into: input.data)
        for (j, i) in idx.enumerated() { labels[j] = train.label(i, slot: 0) }
        let vNow = v
        encoder.setInvariance(vNow)
        encoderArena.zeroGrads()
        arena.zeroGrads()
        let h = try encoder.forward(Tensor(input.data, Shape(batch, s.channels, s.height, s.width)), training: false)
        for r in 0..<batch {
          for j in 0..<d { z.data[r * d + j] = (h.data[r * d + j] - shift[j]) * scale[j] }
        }
        let logits = try fc.forward(Tensor(z.data, Shape(batch, d)), training: true)
        epochLoss += Double(try labels.withUnsafeBufferPointer {
          try softmaxCrossEntropy(dlogits.data, logits.data, $0.baseAddress!, batch, classes)
        })
        let dz = try fc.backward(Tensor(dlogits.data, Shape(batch, classes)))
        for r in 0..<batch {
          for j in 0..<d { dh.data[r * d + j] = dz.data[r * d + j] * scale[j] }
        }
        _ = try encoder.backward(Tensor(dh.data, h.shape))
        guard let dv = encoder.invarianceGradient else { preconditionFailure("no invariance gradient after backward") }
        try opt.step(arena, lr: schedule.lr(at: step))
        step += 1
        let t = Float(step)
        for g in 0..<k {
          let du = dv.data[g] * vNow[g] * (1 - vNow[g])
          m1[g] = b1 * m1[g] + (1 - b1) * du
          m2[g] = b2 * m2[g] + (1 - b2) * du * du
          let mh = m1[g] / (1 - Foundation.pow(b1, t)), vh = m2[g] / (1 - Foundation.pow(b2, t))
          u[g] -= settings.invarianceLR * mh / (vh.squareRoot() + 1e-8)
        }
      }
      trajectory.append(v)
      losses.append(epochLoss / Double(max(perEpoch, 1)))
    }

    // The joint head on the test split at the learned v.
    encoder.setInvariance(v)
    var correct = 0
    var i = 0
    while i < test.count {
      let n = min(batch, test.count - i)
      try test.load(indices: i..<(i + n), into: input.data)
      let h = try encoder.forward(Tensor(input.data, Shape(n, s.channels, s.height, s.width)), training: false)
      for r in 0..<n {
        for j in 0..<d { z.data[r * d + j] = (h.data[r * d + j] - shift[j]) * scale[j] }
      }
      let logits = try fc.forward(Tensor(z.data, Shape(n, d)), training: false)
      for r in 0..<n {
        var best = 0
        for c in 1..<classes where logits.data[r * classes + c] > logits.data[r * classes + best] { best = c }
        if best == test.label(i + r, slot: 0) { correct += 1 }
      }
      i += n
    }
    return Learned(
      v: v, trajectory: trajectory, losses: losses, jointAccuracy: Double(correct) / Double(max(test.count, 1)),
      seconds: Date().timeIntervalSince(t0))
  }

  /// The corners of [0, 1]^k in binary order (k = 2: (0,0), (1,0), (0,1), (1,1)).
  public static func corners(_ k: Int) -> [[Float]] {
    (0..<(1 << k)).map { c in (0..<k).map { Float((c >> $0) & 1) } }
  }

  /// A linear probe (`Probes.linear`) of the pooled features of `encoder` — at `v` when it is a
  /// conditioned encoder — fit on `train`, scored on `test`.
  /// Collective (features are extracted over the ranks); the accuracy on rank 0, nil elsewhere.
  public static func probe(
    encoder: any Encoder, v: [Float]?, train: EvalSource, test: EvalSource, classes: Int, epochs: Int,
    comm: Communicator, batch: Int = 256
  ) throws -> Double? {
    if let v, let c = encoder as? ConditionedConv4 { c.setInvariance(v) }
    let tr = try FeatureExtractor.extract(encoder: encoder, eval: train, layers: [.pooled], comm: comm, batch: batch)
    let te = try FeatureExtractor.extract(encoder: encoder, eval: test, layers: [.pooled], comm: comm, batch: batch)
    guard let tr, let te else { return nil }
    return try Probes.linear(train: tr[.pooled]!, test: te[.pooled]!, classes: classes, epochs: epochs)
  }
}
