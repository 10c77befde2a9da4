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
}

/// Which activation a probe reads.
public enum FeatureLayer: String, CaseIterable, Sendable {
  /// The encoder's output (64-d for conv4).
  case pooled
  /// The last feature map before the final pooling, flattened (576-d for conv4).
  case prePool = "pre-pool"
}

public enum FeatureExtractor {
  /// Runs the frozen encoder (BN in inference mode) over `source`, each rank on a contiguous
  /// share of the samples, and gathers the features to rank 0 (other ranks get `nil`).
  public static func extract(
    encoder: any Encoder, source: ImageSource, layers: [FeatureLayer], comm: Communicator,
    batch: Int = 256, limit: Int? = nil
  ) throws -> [FeatureLayer: FeatureSet]? {
    let total = min(source.count, limit ?? source.count)
    let per = (total + comm.size - 1) / comm.size
    let lo = min(total, comm.rank * per)
    let hi = min(total, lo + per)
    let h = source.height
    let w = source.width
    let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: h * w)
    defer { pixels.deallocate() }
    let input = Storage(batch * h * w)
    var local: [FeatureLayer: [Float]] = [:]
    let dims: [FeatureLayer: Int] = [.pooled: encoder.featureDim, .prePool: encoder.prePoolDim]
    for l in layers { local[l] = [Float](repeating: 0, count: per * dims[l]!) }
    var i = lo
    while i < hi {
      let n = min(batch, hi - i)
      for j in 0..<n {
        try source.pixels(i + j, into: pixels)
        SimCLRAugment.normalize(pixels, count: h * w, into: input.data + j * h * w)
      }
      let out = try encoder.forward(Tensor(input.data, Shape(n, 1, h, w)), training: false)
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
    var labels = [Float](repeating: -1, count: per)
    for j in lo..<hi { labels[j - lo] = Float(source.label(j)) }
    // Every rank takes part in the same gathers, in the same order; rank 0 assembles.
    let labs = try gatherShares(labels, rowWidth: 1, per: per, total: total, comm: comm)
    var result: [FeatureLayer: FeatureSet] = [:]
    for l in layers {
      let values = try gatherShares(local[l]!, rowWidth: dims[l]!, per: per, total: total, comm: comm)
      if let values, let labs {
        result[l] = FeatureSet(dim: dims[l]!, values: values, labels: labs.map { Int($0) })
      }
    }
    return comm.rank == 0 ? result : nil
  }

  /// Gathers every rank's share of a `total`-row matrix to rank 0: rank r holds rows
  /// `r·per ..< min(total, (r+1)·per)` padded to `per` rows of `rowWidth` floats. Returns the
  /// rows in order without the padding on rank 0, nil elsewhere (collective on every rank).
  static func gatherShares(
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

  /// Raw normalised pixels as features (the baseline every probe must beat).
  public static func pixels(source: ImageSource, limit: Int? = nil) throws -> FeatureSet {
    let total = min(source.count, limit ?? source.count)
    let d = source.height * source.width
    var values = [Float](repeating: 0, count: total * d)
    let px = UnsafeMutablePointer<UInt8>.allocate(capacity: d)
    defer { px.deallocate() }
    try values.withUnsafeMutableBufferPointer { v in
      for i in 0..<total {
        try source.pixels(i, into: px)
        SimCLRAugment.normalize(px, count: d, into: v.baseAddress! + i * d)
      }
    }
    return FeatureSet(dim: d, values: values, labels: (0..<total).map { source.label($0) })
  }
}
