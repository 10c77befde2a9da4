import Foundation

/// An α–β model of a link and of a data-parallel training step on it (`parallax scale
/// --predict`).
///
/// Collectives are costed as bandwidth-optimal ring algorithms (Patarasuk & Yuan; Thakur,
/// Rabenseifner & Gropp): on `p` ranks an all-reduce of `n` bytes takes
/// `2(p−1)·α + 2(p−1)/p · n · β` (a reduce-scatter then an all-gather, each `p−1` rounds),
/// and an all-gather whose result is `N` bytes takes `(p−1)·α + (p−1)/p · N · β`. α is the
/// per-message latency (s), β the inverse bandwidth (s/byte) of one rank's link. Real MPI
/// libraries switch to tree or recursive-doubling algorithms for small messages, so a fitted
/// α is an *effective* latency for the message sizes and rank counts it was fitted on.
public struct LinkModel: Sendable, Equatable, CustomStringConvertible {
  /// How many latencies a collective pays. Both move the bandwidth-optimal 2(p−1)/p·n
  /// bytes per rank; `ring` pays 2(p−1) latencies per all-reduce ((p−1) per all-gather),
  /// `logarithmic` (Rabenseifner's recursive halving + doubling, what MPI libraries use for
  /// small and medium messages at scale) 2⌈log₂p⌉ (⌈log₂p⌉). Identical at p = 2.
  public enum Algorithm: String, Sendable, CaseIterable { case ring, logarithmic }

  /// Per-message latency in seconds.
  public var alpha: Double
  /// Seconds per byte (1 / bandwidth).
  public var beta: Double
  public var algorithm: Algorithm
  /// A second regime for messages of at least `threshold` bytes (MPI libraries switch
  /// algorithms by message size, e.g. recursive doubling below and a ring above), with its
  /// own α and β; nil: one regime for all sizes.
  public var large: Regime?

  /// The large-message regime of a piecewise link.
  public struct Regime: Sendable, Equatable {
    public var threshold: Double
    public var alpha: Double
    public var beta: Double
    public init(threshold: Double, alpha: Double, beta: Double) {
      self.threshold = threshold
      self.alpha = alpha
      self.beta = beta
    }
  }

  public init(alpha: Double, beta: Double, algorithm: Algorithm = .ring, large: Regime? = nil) {
    self.alpha = alpha
    self.beta = beta
    self.algorithm = algorithm
    self.large = large
  }

  /// α and β for a message of `bytes`.
  public func coefficients(bytes: Double) -> (alpha: Double, beta: Double) {
    if let l = large, bytes >= l.threshold { return (l.alpha, l.beta) }
    return (alpha, beta)
  }

  /// A link of `gbitPerSecond` with latency `alpha` seconds.
  public init(gbitPerSecond: Double, alpha: Double, algorithm: Algorithm = .ring) {
    self.init(alpha: alpha, beta: 8 / (gbitPerSecond * 1e9), algorithm: algorithm)
  }

  /// Latency rounds of one all-gather (an all-reduce pays twice as many).
  public static func rounds(_ p: Int, _ algorithm: Algorithm) -> Double {
    guard p > 1 else { return 0 }
    switch algorithm {
    case .ring: return Double(p - 1)
    case .logarithmic: return ceil(log2(Double(p)))
    }
  }

  /// Bandwidth in Gbit/s.
  public var gbitPerSecond: Double { beta > 0 ? 8 / beta / 1e9 : .infinity }

  public var description: String {
    let small = String(format: "α = %.1f µs, β = %.4g s/B (%.3g Gbit/s)", alpha * 1e6, beta, gbitPerSecond)
    guard let l = large else { return small }
    return small
      + String(
        format: "; from %.0f B: α = %.1f µs, β = %.4g s/B (%.3g Gbit/s)", l.threshold, l.alpha * 1e6, l.beta,
        l.beta > 0 ? 8 / l.beta / 1e9 : .infinity)
  }

  /// The two regressors of the all-reduce model: time = α·x0 + β·x1.
  public static func allReduceTerms(bytes: Double, ranks p: Int, algorithm: Algorithm = .ring) -> (Double, Double) {
    guard p > 1 else { return (0, 0) }
    let q = Double(p)
    return (2 * rounds(p, algorithm), 2 * (q - 1) / q * bytes)
  }

  /// All-reduce of `bytes` on `p` ranks.
  public func allReduce(bytes: Double, ranks p: Int) -> Double {
    let (x0, x1) = Self.allReduceTerms(bytes: bytes, ranks: p, algorithm: algorithm)
    let (a, b) = coefficients(bytes: bytes)
    return a * x0 + b * x1
  }

  /// All-gather whose result (all ranks' parts together) is `totalBytes`.
  public func allGather(totalBytes: Double, ranks p: Int) -> Double {
    guard p > 1 else { return 0 }
    let q = Double(p)
    let (a, b) = coefficients(bytes: totalBytes)
    return Self.rounds(p, algorithm) * a + (q - 1) / q * totalBytes * b
  }

  /// One timed all-reduce: `ranks`, message `bytes`, `seconds`.
  public struct Sample: Sendable, Equatable {
    public var ranks: Int
    public var bytes: Double
    public var seconds: Double
    public init(ranks: Int, bytes: Double, seconds: Double) {
      self.ranks = ranks
      self.bytes = bytes
      self.seconds = seconds
    }
  }

  /// Least-squares fit of α and β to timed all-reduces (samples with one rank are ignored).
  ///
  /// With `relative` (the default) each residual is divided by the measured time, so a
  /// 4-byte message (latency-bound, microseconds) weighs as much as a 4 MiB one
  /// (bandwidth-bound, milliseconds); otherwise plain least squares. Solves the 2×2 normal
  /// equations; a negative coefficient is clamped to 0 and the other refitted alone.
  /// - Returns: the model and the root-mean-square relative error of the fit.
  public static func fit(_ samples: [Sample], relative: Bool = true, algorithm: Algorithm = .ring) -> (model: LinkModel, rmsRelativeError: Double) {
    let rows = samples.filter { $0.ranks > 1 && $0.seconds > 0 }.map { s -> (Double, Double, Double, Double) in
      let (x0, x1) = allReduceTerms(bytes: s.bytes, ranks: s.ranks, algorithm: algorithm)
      let w = relative ? 1 / s.seconds : 1
      return (x0 * w, x1 * w, s.seconds * w, s.seconds)
    }
    guard !rows.isEmpty else { return (LinkModel(alpha: 0, beta: 0, algorithm: algorithm), 0) }
    var a00 = 0.0, a01 = 0.0, a11 = 0.0, b0 = 0.0, b1 = 0.0
    for (x0, x1, y, _) in rows {
      a00 += x0 * x0
      a01 += x0 * x1
      a11 += x1 * x1
      b0 += x0 * y
      b1 += x1 * y
    }
    let det = a00 * a11 - a01 * a01
    var alpha = 0.0, beta = 0.0
    if abs(det) > 1e-300 * max(1, a00 * a11) {
      alpha = (b0 * a11 - b1 * a01) / det
      beta = (a00 * b1 - a01 * b0) / det
    }
    if alpha < 0 || det == 0 {
      alpha = 0
      beta = a11 > 0 ? max(0, b1 / a11) : 0
    }
    if beta < 0 {
      beta = 0
      alpha = a00 > 0 ? max(0, b0 / a00) : 0
    }
    let model = LinkModel(alpha: alpha, beta: beta, algorithm: algorithm)
    return (model, model.rmsRelativeError(samples))
  }

  /// Root-mean-square relative error of the model on `samples` (one-rank samples ignored).
  public func rmsRelativeError(_ samples: [Sample]) -> Double {
    var sq = 0.0
    var n = 0
    for s in samples where s.ranks > 1 && s.seconds > 0 {
      let e = (allReduce(bytes: s.bytes, ranks: s.ranks) - s.seconds) / s.seconds
      sq += e * e
      n += 1
    }
    return n > 0 ? (sq / Double(n)).squareRoot() : 0
  }

  /// `fit`, or two regimes split at one of the sweep's sizes when that explains the samples
  /// much better (rms relative error below `gain` × the single fit's). Each regime is fitted
  /// on its own samples (at least `minSizes` distinct sizes each); the split with the lowest
  /// rms over all samples wins.
  public static func fitPiecewise(
    _ samples: [Sample], algorithm: Algorithm = .ring, gain: Double = 0.75, minSizes: Int = 3
  ) -> (model: LinkModel, rmsRelativeError: Double) {
    let single = fit(samples, algorithm: algorithm)
    let used = samples.filter { $0.ranks > 1 && $0.seconds > 0 }
    let sizes = Array(Set(used.map(\.bytes))).sorted()
    guard sizes.count >= 2 * minSizes else { return single }
    var best = single
    for i in minSizes...(sizes.count - minSizes) {
      let threshold = sizes[i]
      let lo = fit(used.filter { $0.bytes < threshold }, algorithm: algorithm).model
      let hi = fit(used.filter { $0.bytes >= threshold }, algorithm: algorithm).model
      let m = LinkModel(
        alpha: lo.alpha, beta: lo.beta, algorithm: algorithm,
        large: Regime(threshold: threshold, alpha: hi.alpha, beta: hi.beta))
      let rms = m.rmsRelativeError(used)
      if rms < best.rmsRelativeError { best = (m, rms) }
    }
    return best.rmsRelativeError < gain * single.rmsRelativeError ? best : single
  }
}

/// The transport as fitted per rank count: MPI picks its collective algorithm by rank count
/// as well as by size, so one α–β pair across rank counts misses (measured on namespace
/// hosts: a 4-rank all-reduce of ≥ 128 kB cost 2.0× the 2-rank one where the ring predicts
/// 1.5×). A rank count that was swept uses its own fit; others use the fit of the nearest
/// swept count below (or the smallest), extrapolated by the ring law.
public struct Transport: Sendable {
  public var fits: [Int: LinkModel]

  public init(fits: [Int: LinkModel]) {
    precondition(!fits.isEmpty)
    self.fits = fits
  }

  /// Fits each rank count's samples on their own (`LinkModel.fitPiecewise`).
  public static func fit(_ samples: [LinkModel.Sample], algorithm: LinkModel.Algorithm = .ring) -> (Transport, [Int: Double]) {
    var fits: [Int: LinkModel] = [:]
    var rms: [Int: Double] = [:]
    for p in Set(samples.map(\.ranks)) where p > 1 {
      let (m, e) = LinkModel.fitPiecewise(samples.filter { $0.ranks == p }, algorithm: algorithm)
      fits[p] = m
      rms[p] = e
    }
    return (Transport(fits: fits.isEmpty ? [2: LinkModel(alpha: 0, beta: 0)] : fits), rms)
  }

  /// The link model used for `p` ranks.
  public func link(ranks p: Int) -> LinkModel {
    let counts = fits.keys.sorted()
    let chosen = counts.last { $0 <= p } ?? counts[0]
    return fits[chosen]!
  }

  /// The fit of the largest swept rank count (what predictions past the sweep start from).
  public var largest: LinkModel { fits[fits.keys.max()!]! }
}

/// What one rank does per step, measured once (on a fast link or shared memory), from which
/// the step on another link and rank count is predicted.
public struct StepProfile: Sendable, Equatable {
  /// A non-gradient collective on the step's critical path (sync BN moments, the loss's
  /// embedding all-gather and its gradient all-reduce, …).
  public struct Collective: Sendable, Equatable {
    public enum Kind: String, Sendable { case allReduce, allGather }
    public var kind: Kind
    /// Bytes each rank contributes (an all-gather's result is `ranks ×` this).
    public var bytes: Double
    /// Whether an all-reduce's message grows with the rank count (`bytes` is then per rank,
    /// as the NT-Xent gradient of all ranks' embeddings).
    public var growsWithRanks: Bool

    public init(_ kind: Kind, bytes: Double, growsWithRanks: Bool = false) {
      self.kind = kind
      self.bytes = bytes
      self.growsWithRanks = growsWithRanks
    }

    public func seconds(_ link: LinkModel, ranks p: Int) -> Double {
      switch kind {
      case .allReduce: return link.allReduce(bytes: growsWithRanks ? bytes * Double(p) : bytes, ranks: p)
      case .allGather: return link.allGather(totalBytes: bytes * Double(p), ranks: p)
      }
    }
  }

  /// A gradient bucket: its bytes on the wire and when backward has filled it, as a fraction
  /// of backward (0 = backward's start, 1 = its end).
  public struct Bucket: Sendable, Equatable {
    public var bytes: Double
    public var ready: Double
    public init(bytes: Double, ready: Double) {
      self.bytes = bytes
      self.ready = ready
    }
  }

  /// Step time without any communication wait (data, forward, loss, backward, optimizer).
  public var compute: Double
  /// Duration of backward (the window the buckets can overlap with).
  public var backward: Double
  /// Buckets in issue order (the last is ready only when backward ends).
  public var buckets: [Bucket]
  /// Collectives on the critical path besides the gradient sync.
  public var collectives: [Collective]

  public init(compute: Double, backward: Double, buckets: [Bucket], collectives: [Collective] = []) {
    self.compute = compute
    self.backward = backward
    self.buckets = buckets
    self.collectives = collectives
  }

  /// All gradient bytes (the fused message).
  public var gradientBytes: Double { buckets.reduce(0) { $0 + $1.bytes } }
}

/// A predicted step.
public struct StepPrediction: Sendable, Equatable {
  /// `StepProfile.compute`.
  public var compute: Double
  /// The non-gradient collectives, serial on the critical path.
  public var collectives: Double
  /// Link time of the whole gradient sync (sum over buckets, or the fused all-reduce).
  public var gradientComm: Double
  /// The part of the gradient sync the step waits for after backward.
  public var exposed: Double
  /// compute + collectives + exposed.
  public var step: Double { compute + collectives + exposed }
}

public enum ScalingModel {
  /// Predicts one step of `profile` on `ranks` ranks over `link`.
  ///
  /// Without overlap the gradient is one fused all-reduce after backward (all of it is
  /// exposed). With overlap each bucket is issued when backward has filled it
  /// (`ready · backward` after backward starts) and the buckets share the link one after
  /// another (start = max(ready, previous bucket's end)); what is left after backward ends
  /// is exposed. The last bucket is only ready at the end of backward, so its all-reduce is
  /// always exposed: larger buckets hide less.
  ///
  /// `bucketLink` costs the gradient all-reduces when they run on another implementation than
  /// the blocking collectives (Open MPI: nonblocking ones in libnbc); default `link`.
  public static func predict(
    _ profile: StepProfile, link: LinkModel, bucketLink: LinkModel? = nil, ranks p: Int, overlap: Bool
  ) -> StepPrediction {
    let coll = profile.collectives.reduce(0) { $0 + $1.seconds(link, ranks: p) }
    let link = bucketLink ?? link
    guard p > 1, !profile.buckets.isEmpty else {
      return StepPrediction(compute: profile.compute, collectives: coll, gradientComm: 0, exposed: 0)
    }
    if !overlap {
      let fused = link.allReduce(bytes: profile.gradientBytes, ranks: p)
      return StepPrediction(compute: profile.compute, collectives: coll, gradientComm: fused, exposed: fused)
    }
    var end = 0.0
    var total = 0.0
    for b in profile.buckets {
      let t = link.allReduce(bytes: b.bytes, ranks: p)
      let start = max(min(max(b.ready, 0), 1) * profile.backward, end)
      end = start + t
      total += t
    }
    return StepPrediction(
      compute: profile.compute, collectives: coll, gradientComm: total, exposed: max(0, end - profile.backward))
  }

  /// The collectives of one SimCLR step with sync BN: per BN layer of `C` channels one
  /// all-reduce of 1 + 2C doubles in forward and one of 2C in backward; the NT-Xent
  /// loss all-gathers the `rows × dim` embeddings, all-reduces the loss (one double) and, in
  /// backward, the gradient of all ranks' embeddings (`ranks × rows × dim` floats).
  public static func simclrCollectives(bnChannels: [Int], rowsPerRank: Int, dim: Int, syncBN: Bool = true) -> [StepProfile.Collective] {
    var out: [StepProfile.Collective] = []
    if syncBN {
      for c in bnChannels {
        out.append(.init(.allReduce, bytes: Double(8 * (1 + 2 * c))))
        out.append(.init(.allReduce, bytes: Double(8 * 2 * c)))
      }
    }
    out.append(.init(.allGather, bytes: Double(4 * rowsPerRank * dim)))
    out.append(.init(.allReduce, bytes: 8))
    out.append(.init(.allReduce, bytes: Double(4 * rowsPerRank * dim), growsWithRanks: true))
    return out
  }
}
