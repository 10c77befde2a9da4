/// A contiguous slice `[offset, offset + count)` of the gradient arena that is all-reduced
/// as one message (DESIGN.md invariant 1: zero-copy, in place).
public struct GradientBucket: Sendable, Equatable, CustomStringConvertible {
  /// Position in issue order: bucket 0 holds the highest offsets (the last layers, whose
  /// gradients backward finishes first).
  public var index: Int
  public var offset: Int
  public var count: Int

  public init(index: Int, offset: Int, count: Int) {
    self.index = index
    self.offset = offset
    self.count = count
  }

  public var end: Int { offset + count }
  public var description: String { "bucket \(index) [\(offset), \(end))" }
}

/// How gradient ranges are grouped into buckets (PyTorch DDP's `bucket_cap_mb`).
public enum GradientBuckets {
  /// Groups the arena's ranges into contiguous buckets in reverse registration order.
  ///
  /// Ranges are taken from the last to the first; a bucket is closed when adding the next
  /// range would take it past `capBytes`, so a bucket exceeds the cap only when one range
  /// alone does. `capBytes == 0` gives one bucket of everything (a fused all-reduce).
  /// - Parameters:
  ///   - ranges: `(offset, count)` of every parameter range, in registration order,
  ///     contiguous from 0.
  ///   - capBytes: the cap in bytes of `Float` gradients.
  /// - Returns: buckets in issue order (index 0 = highest offsets).
  public static func plan(ranges: [(offset: Int, count: Int)], capBytes: Int) -> [GradientBucket]
  {
    let total = ranges.last.map { $0.offset + $0.count } ?? 0
    guard total > 0 else { return [] }
    if capBytes <= 0 { return [GradientBucket(index: 0, offset: 0, count: total)] }
    let cap = max(1, capBytes / MemoryLayout<Float>.stride)
    var buckets: [GradientBucket] = []
    var end = total
    var start = total
    for r in ranges.reversed() {
      precondition(r.offset + r.count == start, "gradient ranges must be contiguous")
      if start < end && end - r.offset > cap {
        buckets.append(GradientBucket(index: buckets.count, offset: start, count: end - start))
        end = start
      }
      start = r.offset
    }
    if start < end {
      buckets.append(GradientBucket(index: buckets.count, offset: start, count: end - start))
    }
    return buckets
  }
}
