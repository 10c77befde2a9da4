import Data
import Dist
import Foundation

/// k-means on features split over the ranks (each rank holds a contiguous share of the rows,
/// as `FeatureExtractor.share` leaves them): k-means++ initialisation and Lloyd iterations
/// whose per-cluster sums and counts are all-reduced, so extraction and clustering both run
/// in parallel and every rank ends with the same centroids.
///
/// Randomness is keyed (`KeyedRandom(seed, 0, draw, .evaluation)`) and draws pick a *global*
/// row, so the clustering does not depend on the rank count except through the summation
/// order of the all-reduced sums (done in `Double`).
public enum KMeans {
  public struct Result: Sendable {
    /// [k, d] centroids (the same on every rank).
    public var centroids: [Double]
    /// The cluster of each of this rank's rows.
    public var assignments: [Int]
    public var iterations: Int
    /// Sum of squared distances to the assigned centroid, over all ranks.
    public var inertia: Double
  }

  /// - Parameters:
  ///   - local: this rank's rows, `[n_local, d]`, rows `offset ..< offset + n_local` of `total`.
  public static func fit(
    local: [Float], d: Int, offset: Int, total: Int, k: Int, iterations: Int = 100, seed: UInt64 = 0,
    comm: Communicator
  ) throws -> Result {
    let n = local.count / max(d, 1)
    guard d > 0, k >= 1, k <= total else {
      throw ConfigError(message: "k-means: k = \(k) must be in 1…\(total) (the number of samples)")
    }
    // Row counts and first global rows of every rank.
    var counts = [Double](repeating: 0, count: comm.size)
    counts[comm.rank] = Double(n)
    try counts.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: comm.size) }
    var starts = [0]
    for r in 0..<comm.size { starts.append(starts[r] + Int(counts[r])) }
    guard starts[comm.rank] == offset, starts.last! == total else {
      throw ConfigError(message: "k-means: the ranks' rows are not contiguous shares of \(total)")
    }

    func dist2(_ i: Int, _ c: UnsafePointer<Double>) -> Double {
      var s = 0.0
      for j in 0..<d {
        let v = Double(local[i * d + j]) - c[j]
        s += v * v
      }
      return s
    }
    /// Broadcasts global row `g` from the rank that holds it.
    func row(_ g: Int) throws -> [Double] {
      let r = (0..<comm.size).last { starts[$0] <= g && starts[$0 + 1] > g } ?? 0
      var v = [Float](repeating: 0, count: d)
      if r == comm.rank { for j in 0..<d { v[j] = local[(g - offset) * d + j] } }
      try v.withUnsafeMutableBufferPointer { try comm.broadcast($0.baseAddress!, count: d, from: r) }
      return v.map(Double.init)
    }

    // k-means++: the first centroid uniformly, each next one with probability ∝ D².
    var centroids = [Double]()
    var draw = 0
    func uniform() -> Double {
      var rng = KeyedRandom(seed: seed, epoch: 0, sample: draw, purpose: .evaluation)
      draw += 1
      return rng.nextDouble()
    }
    centroids += try row(min(total - 1, Int(uniform() * Double(total))))
    var nearest = [Double](repeating: .infinity, count: n)
    while centroids.count < k * d {
      let c = centroids.count / d - 1
      centroids.withUnsafeBufferPointer { cp in
        for i in 0..<n { nearest[i] = min(nearest[i], dist2(i, cp.baseAddress! + c * d)) }
      }
      var sums = [Double](repeating: 0, count: comm.size)
      sums[comm.rank] = nearest.reduce(0, +)
      try sums.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: comm.size) }
      let totalD2 = sums.reduce(0, +)
      var target = uniform() * totalD2
      var chosen = 0
      if totalD2 > 0 {
        // The rank whose cumulative D² passes the target, then the row within it.
        var r = 0
        while r < comm.size - 1 && target >= sums[r] {
          target -= sums[r]
          r += 1
        }
        var found = starts[r + 1] - 1
        if r == comm.rank {
          var acc = 0.0
          for i in 0..<n {
            acc += nearest[i]
            if acc > target { found = offset + i; break }
          }
        }
        var g = [Double](repeating: 0, count: 1)
        if r == comm.rank { g[0] = Double(found) }
        try g.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: 1) }
        chosen = Int(g[0])
      } else {
        chosen = min(total - 1, Int(uniform() * Double(total)))
      }
      centroids += try row(chosen)
    }

    // Lloyd.
    var assignments = [Int](repeating: -1, count: n)
    var iteration = 0
    var inertia = 0.0
    while iteration < iterations {
      iteration += 1
      var changed = 0.0
      inertia = 0
      centroids.withUnsafeBufferPointer { cp in
        for i in 0..<n {
          var best = 0
          var bestD = Double.infinity
          for c in 0..<k {
            let dd = dist2(i, cp.baseAddress! + c * d)
            if dd < bestD { bestD = dd; best = c }
          }
          if assignments[i] != best { changed += 1 }
          assignments[i] = best
          inertia += bestD
        }
      }
      // [k·d sums, k counts, changed, inertia]
      var stats = [Double](repeating: 0, count: k * d + k + 2)
      for i in 0..<n {
        let c = assignments[i]
        for j in 0..<d { stats[c * d + j] += Double(local[i * d + j]) }
        stats[k * d + c] += 1
      }
      stats[k * d + k] = changed
      stats[k * d + k + 1] = inertia
      try stats.withUnsafeMutableBufferPointer { try comm.allReduceSum($0.baseAddress!, count: $0.count) }
      inertia = stats[k * d + k + 1]
      for c in 0..<k where stats[k * d + c] > 0 {
        for j in 0..<d { centroids[c * d + j] = stats[c * d + j] / stats[k * d + c] }
      }
      if stats[k * d + k] == 0 { break }
    }
    return Result(centroids: centroids, assignments: assignments, iterations: iteration, inertia: inertia)
  }
}

/// Agreement of a clustering with the labels (as scikit-learn computes them).
public enum ClusteringMetrics {
  static func contingency(_ labels: [Int], _ clusters: [Int]) -> (table: [[Double]], rows: [Double], cols: [Double]) {
    let classes = (labels.max() ?? -1) + 1, groups = (clusters.max() ?? -1) + 1
    var t = [[Double]](repeating: [Double](repeating: 0, count: groups), count: classes)
    for (a, b) in zip(labels, clusters) { t[a][b] += 1 }
    return (t, t.map { $0.reduce(0, +) }, (0..<groups).map { j in t.reduce(0) { $0 + $1[j] } })
  }

  /// Normalised mutual information with the arithmetic mean of the entropies
  /// (`normalized_mutual_info_score`'s default).
  public static func nmi(labels: [Int], clusters: [Int]) -> Double {
    let n = Double(labels.count)
    let (t, rows, cols) = contingency(labels, clusters)
    var mi = 0.0
    for (i, row) in t.enumerated() {
      for (j, v) in row.enumerated() where v > 0 { mi += v / n * log(n * v / (rows[i] * cols[j])) }
    }
    func entropy(_ p: [Double]) -> Double { -p.filter { $0 > 0 }.reduce(0) { $0 + $1 / n * log($1 / n) } }
    let hl = entropy(rows), hc = entropy(cols)
    if hl == 0 && hc == 0 { return 1 }
    let denominator = (hl + hc) / 2
    return denominator > 0 ? max(0, mi) / denominator : 0
  }

  /// Adjusted Rand index (`adjusted_rand_score`).
  public static func ari(labels: [Int], clusters: [Int]) -> Double {
    func pairs(_ x: Double) -> Double { x * (x - 1) / 2 }
    let (t, rows, cols) = contingency(labels, clusters)
    let index = t.flatMap { $0 }.reduce(0) { $0 + pairs($1) }
    let a = rows.reduce(0) { $0 + pairs($1) }, b = cols.reduce(0) { $0 + pairs($1) }
    let expected = a * b / pairs(Double(labels.count))
    let maximum = (a + b) / 2
    return maximum == expected ? 1 : (index - expected) / (maximum - expected)
  }

  /// Accuracy under the best one-to-one map of clusters to classes (Hungarian algorithm on
  /// the contingency table).
  public static func matchedAccuracy(labels: [Int], clusters: [Int]) -> Double {
    let (t, _, _) = contingency(labels, clusters)
    let size = max(t.count, t.first?.count ?? 0)
    // Cost = −count on a square matrix (padding with zeros).
    var cost = [[Double]](repeating: [Double](repeating: 0, count: size), count: size)
    for (i, row) in t.enumerated() { for (j, v) in row.enumerated() { cost[j][i] = -v } }
    let match = hungarian(cost)
    var hits = 0.0
    for (cluster, cls) in match.enumerated() where cls < t.count && cluster < (t.first?.count ?? 0) {
      hits += t[cls][cluster]
    }
    return hits / Double(max(labels.count, 1))
  }

  /// Minimum-cost assignment of rows to columns of a square matrix (Kuhn–Munkres with
  /// potentials, O(n³)); returns the column of each row.
  static func hungarian(_ a: [[Double]]) -> [Int] {
    let n = a.count
    var u = [Double](repeating: 0, count: n + 1), v = u
    var p = [Int](repeating: 0, count: n + 1), way = p
    for i in 1...max(n, 1) where n > 0 {
      p[0] = i
      var j0 = 0
      var minv = [Double](repeating: .infinity, count: n + 1)
      var used = [Bool](repeating: false, count: n + 1)
      repeat {
        used[j0] = true
        let i0 = p[j0]
        var delta = Double.infinity
        var j1 = 0
        for j in 1...n where !used[j] {
          let cur = a[i0 - 1][j - 1] - u[i0] - v[j]
          if cur < minv[j] { minv[j] = cur; way[j] = j0 }
          if minv[j] < delta { delta = minv[j]; j1 = j }
        }
        for j in 0...n {
          if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
        }
        j0 = j1
      } while p[j0] != 0
      repeat {
        let j1 = way[j0]
        p[j0] = p[j1]
        j0 = j1
      } while j0 != 0
    }
    var result = [Int](repeating: 0, count: n)
    for j in 1..<(n + 1) where p[j] > 0 { result[p[j] - 1] = j - 1 }
    return result
  }
}
