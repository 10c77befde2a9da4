import Data

/// Few-shot evaluation on frozen features (MT-SLVR's protocol): many N-way K-shot tasks, each
/// classified by nearest centroid, reported as mean accuracy with a 95 % confidence interval.
///
/// Task `t` draws from `KeyedRandom(seed, 0, t, .evaluation)`: `ways` distinct classes among
/// those with at least `shots + queries` examples, then for each class `shots` support and
/// `queries` query examples without overlap. A query is assigned to the class whose support
/// mean (centroid) is nearest in Euclidean distance (after L2-normalising every feature when
/// `normalize` is set). Tasks are a pure function of the seed, so every rank and every rerun
/// evaluates the same ones.
public struct FewShotEvaluator: Sendable {
  public var ways: Int
  public var shots: Int
  public var queries: Int
  public var tasks: Int
  public var seed: UInt64
  public var normalize: Bool

  /// 5-way 1-shot, 15 queries per class, 1000 tasks by default.
  public init(ways: Int = 5, shots: Int = 1, queries: Int = 15, tasks: Int = 1000, seed: UInt64 = 0, normalize: Bool = false) {
    self.ways = ways
    self.shots = shots
    self.queries = queries
    self.tasks = tasks
    self.seed = seed
    self.normalize = normalize
  }

  /// Mean accuracy and its 95 % confidence half-width.
  public struct Result: Sendable, CustomStringConvertible {
    public var mean: Double
    /// `1.96·σ/√tasks`, σ the population standard deviation of the task accuracies (NumPy's
    /// default `ddof = 0`, as few-shot code reports it).
    public var ci95: Double
    public var tasks: Int
    public var accuracies: [Double]
    public var description: String {
      String(format: "%.2f%% ± %.2f%% (%d tasks)", 100 * mean, 100 * ci95, tasks)
    }
  }

  /// Mean and 95 % confidence half-width of per-task accuracies.
  public static func summarize(_ accuracies: [Double]) -> Result {
    let n = Double(accuracies.count)
    let mean = accuracies.reduce(0, +) / n
    let variance = accuracies.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n
    return Result(mean: mean, ci95: 1.96 * variance.squareRoot() / n.squareRoot(), tasks: accuracies.count, accuracies: accuracies)
  }

  /// One task: support and query example indices per way (`[ways][shots]`, `[ways][queries]`).
  public struct Episode: Equatable, Sendable {
    public var classes: [Int]
    public var support: [[Int]]
    public var query: [[Int]]
  }

  /// The examples of each class with enough of them.
  func eligible(_ labels: [Int]) -> [Int: [Int]] {
    var byClass: [Int: [Int]] = [:]
    for (i, l) in labels.enumerated() { byClass[l, default: []].append(i) }
    return byClass.filter { $0.value.count >= shots + queries }
  }

  /// Task `t`'s episode over `labels`.
  public func episode(_ t: Int, labels: [Int]) throws -> Episode {
    try episode(t, byClass: eligible(labels))
  }

  func episode(_ t: Int, byClass: [Int: [Int]]) throws -> Episode {
    let classes = byClass.keys.sorted()
    guard classes.count >= ways else {
      throw DataError.invalidArgument(
        "few-shot: \(ways)-way tasks need \(ways) classes with ≥ \(shots + queries) examples; found \(classes.count)")
    }
    var rng = KeyedRandom(seed: seed, epoch: 0, sample: t, purpose: .evaluation)
    func choose(_ k: Int, from pool: [Int]) -> [Int] {  // partial Fisher–Yates
      var p = pool
      for i in 0..<k { p.swapAt(i, i + rng.nextInt(below: p.count - i)) }
      return Array(p[0..<k])
    }
    let picked = choose(ways, from: classes)
    var support: [[Int]] = [], query: [[Int]] = []
    for c in picked {
      let examples = choose(shots + queries, from: byClass[c]!)
      support.append(Array(examples[0..<shots]))
      query.append(Array(examples[shots...]))
    }
    return Episode(classes: picked, support: support, query: query)
  }

  /// Runs `tasks` episodes on `features` with nearest-centroid classification.
  public func evaluate(_ features: FeatureSet) throws -> Result {
    guard ways >= 2, shots >= 1, queries >= 1, tasks >= 1 else {
      throw DataError.invalidArgument("few-shot: ways ≥ 2, shots, queries and tasks ≥ 1 (got \(ways), \(shots), \(queries), \(tasks))")
    }
    let d = features.dim
    var x = features.values
    if normalize {
      for i in 0..<features.count {
        var s: Float = 0
        for j in 0..<d { s += x[i * d + j] * x[i * d + j] }
        let r = 1 / max(s.squareRoot(), 1e-12)
        for j in 0..<d { x[i * d + j] *= r }
      }
    }
    let byClass = eligible(features.labels)
    var accuracies: [Double] = []
    accuracies.reserveCapacity(tasks)
    var centroids = [Float](repeating: 0, count: ways * d)
    for t in 0..<tasks {
      let e = try episode(t, byClass: byClass)
      for w in 0..<ways {
        for j in 0..<d {
          var s: Float = 0
          for i in e.support[w] { s += x[i * d + j] }
          centroids[w * d + j] = s / Float(shots)
        }
      }
      var correct = 0, total = 0
      for (w, qs) in e.query.enumerated() {
        for q in qs {
          var best = 0
          var bestDistance = Float.infinity
          for c in 0..<ways {
            var dist: Float = 0
            for j in 0..<d {
              let v = x[q * d + j] - centroids[c * d + j]
              dist += v * v
            }
            if dist < bestDistance {
              bestDistance = dist
              best = c
            }
          }
          if best == w { correct += 1 }
          total += 1
        }
      }
      accuracies.append(Double(correct) / Double(total))
    }
    return Self.summarize(accuracies)
  }
}
