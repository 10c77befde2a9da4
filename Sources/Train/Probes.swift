import Foundation
import Model

/// Classifiers trained on frozen features.
public enum Probes {
  /// The probe's peak learning rate (cosine-decayed to 0) and weight decay.
  public static let defaultLR: Float = 0.1
  public static let defaultWeightDecay: Float = 1e-4

  /// Per-dimension mean and standard deviation of `train`, applied to both sets.
  public static func standardize(_ train: inout FeatureSet, _ test: inout FeatureSet) {
    let d = train.dim
    var mean = [Double](repeating: 0, count: d)
    var sq = [Double](repeating: 0, count: d)
    for i in 0..<train.count {
      for j in 0..<d {
        let v = Double(train.values[i * d + j])
        mean[j] += v
        sq[j] += v * v
      }
    }
    let n = Double(max(train.count, 1))
    var scale = [Float](repeating: 1, count: d)
    var shift = [Float](repeating: 0, count: d)
    for j in 0..<d {
      let m = mean[j] / n
      let v = max(sq[j] / n - m * m, 0)
      shift[j] = Float(m)
      scale[j] = Float(1 / (v.squareRoot() + 1e-6))
    }
    func apply(_ s: inout FeatureSet) {
      let rows = s.count
      s.values.withUnsafeMutableBufferPointer { p in
        for i in 0..<rows {
          for j in 0..<d { p[i * d + j] = (p[i * d + j] - shift[j]) * scale[j] }
        }
      }
    }
    apply(&train)
    apply(&test)
  }

  /// Multinomial logistic regression (a linear layer and softmax cross-entropy) trained by
  /// SGD with momentum and a cosine schedule on standardised features; returns test accuracy.
  public static func linear(
    train: FeatureSet, test: FeatureSet, classes: Int = 10, epochs: Int = 30, batch: Int = 256,
    lr: Float = defaultLR, weightDecay: Float = defaultWeightDecay, seed: UInt64 = 0
  ) throws -> Double {
    var train = train
    var test = test
    standardize(&train, &test)
    let d = train.dim
    let arena = ParameterArena()
    let fc = Linear(arena: arena, name: "fc", inFeatures: d, outFeatures: classes)
    arena.allocate(seed: seed)
    let opt = SGD(parameterCount: arena.parameterCount, momentum: 0.9, weightDecay: weightDecay)
    let steps = epochs * max(1, train.count / batch)
    let schedule = WarmupCosine(baseLR: lr, warmupSteps: 0, totalSteps: steps)
    let x = Storage(batch * d)
    let dlogits = Storage(batch * classes)
    var labels = [Int](repeating: 0, count: batch)
    var order = Array(0..<train.count)
    var rng = SplitMix64(seed: seed)
    var step = 0
    for _ in 0..<epochs {
      order.shuffle(using: &rng)
      var b = 0
      while b + batch <= train.count {
        for j in 0..<batch {
          let i = order[b + j]
          labels[j] = train.labels[i]
          train.values.withUnsafeBufferPointer { (x.data + j * d).update(from: $0.baseAddress! + i * d, count: d) }
        }
        arena.zeroGrads()
        let logits = try fc.forward(Tensor(x.data, Shape(batch, d)), training: true)
        _ = try labels.withUnsafeBufferPointer {
          try softmaxCrossEntropy(dlogits.data, logits.data, $0.baseAddress!, batch, classes)
        }
        _ = try fc.backward(Tensor(dlogits.data, Shape(batch, classes)))
        try opt.step(arena, lr: schedule.lr(at: step))
        step += 1
        b += batch
      }
    }
    return try accuracy(fc, test, classes: classes)
  }

  static func accuracy(_ fc: Linear, _ test: FeatureSet, classes: Int) throws -> Double {
    var correct = 0
    let d = test.dim
    let chunk = 1000
    var i = 0
    try test.values.withUnsafeBufferPointer { v in
      while i < test.count {
        let n = min(chunk, test.count - i)
        let logits = try fc.forward(Tensor(UnsafeMutablePointer(mutating: v.baseAddress! + i * d), Shape(n, d)), training: false)
        for r in 0..<n {
          var best = 0
          for c in 1..<classes where logits.data[r * classes + c] > logits.data[r * classes + best] { best = c }
          if best == test.labels[i + r] { correct += 1 }
        }
        i += n
      }
    }
    return Double(correct) / Double(max(test.count, 1))
  }

  /// Weighted k-nearest-neighbour accuracy on L2-normalised features (cosine similarity),
  /// votes weighted by exp(sim/τ) as in instance-discrimination evaluations.
  public static func knn(
    train: FeatureSet, test: FeatureSet, k: Int = 20, temperature: Float = 0.07, classes: Int = 10
  ) -> Double {
    let d = train.dim
    func normalized(_ s: FeatureSet) -> [Float] {
      var v = s.values
      for i in 0..<s.count {
        var n: Float = 0
        for j in 0..<d { n += v[i * d + j] * v[i * d + j] }
        let inv = 1 / max(n.squareRoot(), 1e-12)
        for j in 0..<d { v[i * d + j] *= inv }
      }
      return v
    }
    let a = normalized(train)
    let b = normalized(test)
    let chunk = 256
    var sims = [Float](repeating: 0, count: chunk * train.count)
    var correct = 0
    var topSim = [Float](repeating: 0, count: k)
    var topIdx = [Int](repeating: 0, count: k)
    var votes = [Float](repeating: 0, count: classes)
    var start = 0
    while start < test.count {
      let n = min(chunk, test.count - start)
      b.withUnsafeBufferPointer { bp in
        a.withUnsafeBufferPointer { ap in
          sims.withUnsafeMutableBufferPointer { sp in
            Gemm.sgemm(
              transA: false, transB: true, m: n, n: train.count, k: d, alpha: 1,
              a: bp.baseAddress! + start * d, lda: d, b: ap.baseAddress!, ldb: d, beta: 0,
              c: sp.baseAddress!, ldc: train.count)
          }
        }
      }
      for r in 0..<n {
        var filled = 0
        sims.withUnsafeBufferPointer { sp in
          let row = sp.baseAddress! + r * train.count
          for j in 0..<train.count {
            let s = row[j]
            if filled < k || s > topSim[filled - 1] {
              var p = filled < k ? filled : k - 1
              while p > 0 && topSim[p - 1] < s {
                topSim[p] = topSim[p - 1]
                topIdx[p] = topIdx[p - 1]
                p -= 1
              }
              topSim[p] = s
              topIdx[p] = j
              if filled < k { filled += 1 }
            }
          }
        }
        for c in 0..<classes { votes[c] = 0 }
        for t in 0..<filled { votes[train.labels[topIdx[t]]] += exp(topSim[t] / temperature) }
        var best = 0
        for c in 1..<classes where votes[c] > votes[best] { best = c }
        if best == test.labels[start + r] { correct += 1 }
      }
      start += n
    }
    return Double(correct) / Double(max(test.count, 1))
  }
}
