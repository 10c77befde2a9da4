import CBLAS
import Data
import Dist
import Foundation
import Model

/// Frozen features of a labelled set: `[count, dim]` row-major, with labels.
public struct FeatureSet {
  public var dim: Int
  public var values: [Float]
  public var labels: [Int]
  public var count: Int { labels.count }

  public init(dim: Int, values: [Float], labels: [Int]) {
    precondition(values.count == dim * labels.count)
    self.dim = dim
    self.values = values
    self.labels = labels
  }

  /// The same features with other labels (another label slot of the same samples).
  public func relabeled(_ labels: [Int]) -> FeatureSet {
    FeatureSet(dim: dim, values: values, labels: labels)
  }
}

/// Which activation a probe reads.
public enum FeatureLayer: String, CaseIterable, Sendable {
  /// The encoder's output (64-d for conv4).
  case pooled
  /// The last feature map before the final pooling, flattened (576-d for conv4).
  case prePool = "pre-pool"
}

public enum FeatureExtractor {
  /// This rank's share of the features of the first `limit` samples of `eval`: the
  /// contiguous rows `range` (rank r holds `r·per ..< min(total, (r+1)·per)`), per layer as
  /// `range.count × dims[layer]` floats. BN runs in inference mode. The feature sizes come from
  /// a forward pass of one zero input, so they are right whatever input shape the encoder was
  /// built for.
  public static func share(
    encoder: any Encoder, eval: EvalSource, layers: [FeatureLayer], comm: Communicator,
    batch: Int = 256, limit: Int? = nil
  ) throws -> (range: Range<Int>, per: Int, total: Int, dims: [FeatureLayer: Int], values: [FeatureLayer: [Float]]) {
    let total = min(eval.count, limit ?? eval.count)
    let per = (total + comm.size - 1) / comm.size
    let lo = min(total, comm.rank * per)
    let hi = min(total, lo + per)
    let s = eval.inputShape
    let input = Storage(batch * s.count)
    for i in 0..<s.count { input.data[i] = 0 }
    let zero = try encoder.forward(Tensor(input.data, Shape(1, s.channels, s.height, s.width)), training: false)
    let dims: [FeatureLayer: Int] = [.pooled: zero.shape.perSample, .prePool: encoder.prePoolFeatures!.shape.perSample]
    var local: [FeatureLayer: [Float]] = [:]
    for l in layers { local[l] = [Float](repeating: 0, count: (hi - lo) * dims[l]!) }
    var i = lo
    while i < hi {
      let n = min(batch, hi - i)
      try eval.load(indices: i..<(i + n), into: input.data)
      let out = try encoder.forward(Tensor(input.data, Shape(n, s.channels, s.height, s.width)), training: false)
      for l in layers {
        let t = l == .pooled ? out : encoder.prePoolFeatures!
        let d = dims[l]!
        precondition(t.shape.perSample == d, "feature size \(t.shape.perSample) ≠ \(d)")
        local[l]!.withUnsafeMutableBufferPointer {
          ($0.baseAddress! + (i - lo) * d).update(from: t.data, count: n * d)
        }
      }
      i += n
    }
    return (lo..<hi, per, total, dims, local)
  }

  /// Runs the frozen encoder (BN in inference mode) over the clean inputs of `eval` (images or
  /// audio alike), each rank on a contiguous share of the first `limit` samples, and gathers
  /// the features to rank 0 (other ranks get `nil`). Row `i` of a feature set is sample `i`;
  /// its labels are label slot `slot` (`relabeled` gives another slot's).
  public static func extract(
    encoder: any Encoder, eval: EvalSource, layers: [FeatureLayer], comm: Communicator,
    batch: Int = 256, limit: Int? = nil, slot: Int = 0
  ) throws -> [FeatureLayer: FeatureSet]? {
    let mine = try share(encoder: encoder, eval: eval, layers: layers, comm: comm, batch: batch, limit: limit)
    // Every rank takes part in the same gathers, in the same order; rank 0 assembles.
    var result: [FeatureLayer: FeatureSet] = [:]
    for l in layers {
      let d = mine.dims[l]!
      var padded = mine.values[l]!
      padded += [Float](repeating: 0, count: mine.per * d - padded.count)
      if let values = try gatherShares(padded, rowWidth: d, per: mine.per, total: mine.total, comm: comm) {
        result[l] = FeatureSet(dim: d, values: values, labels: eval.labels(indices: 0..<mine.total, slot: slot))
      }
    }
    return comm.rank == 0 ? result : nil
  }

  /// Gathers every rank's share of a `total`-row matrix to rank 0: rank r holds rows
  /// `r·per ..< min(total, (r+1)·per)` padded to `per` rows of `rowWidth` floats. Returns the
  /// rows in order without the padding on rank 0, nil elsewhere (collective on every rank).
  public static func gatherShares(
    _ local: [Float], rowWidth d: Int, per: Int, total: Int, comm: Communicator
  ) throws -> [Float]? {
    precondition(local.count == per * d)
    let root = comm.rank == 0
    var g = [Float](repeating: 0, count: root ? per * comm.size * d : 1)
    try local.withUnsafeBufferPointer { s in
      try g.withUnsafeMutableBufferPointer { r in
        try comm.gather(s.baseAddress!, count: per * d, into: r.baseAddress!, root: 0)
      }
    }
    guard root else { return nil }
    var values = [Float]()
    values.reserveCapacity(total * d)
    for r in 0..<comm.size {
      let rlo = min(total, r * per)
      let rhi = min(total, rlo + per)
      values += g[(r * per * d)..<(r * per * d + (rhi - rlo) * d)]
    }
    return values
  }

  /// The clean inputs themselves as features (raw normalised pixels: the baseline every
  /// probe must beat).
  public static func pixels(eval: EvalSource, limit: Int? = nil, slot: Int = 0) throws -> FeatureSet {
    let total = min(eval.count, limit ?? eval.count)
    let d = eval.inputShape.count
    var values = [Float](repeating: 0, count: total * d)
    try values.withUnsafeMutableBufferPointer { try eval.load(indices: 0..<total, into: $0.baseAddress!) }
    return FeatureSet(dim: d, values: values, labels: eval.labels(indices: 0..<total, slot: slot))
  }
}
