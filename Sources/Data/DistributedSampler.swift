import Foundation

/// Splits each epoch's global batches among ranks (drop-last).
///
/// Every rank computes the same epoch permutation — a Fisher–Yates shuffle driven by
/// `KeyedRandom(seed, epoch, 0, .shuffle)` — cuts it into `batchesPerEpoch` global batches of
/// `globalBatch` samples, and takes its contiguous slice `[rank·B_local ..< (rank+1)·B_local]`
/// of each. Concatenating the ranks' slices in rank order gives the global batch, which is
/// what an all-gather of per-rank embeddings produces. The last `count % globalBatch` samples of
/// the permutation are dropped.
///
/// The permutation of the most recent epoch is cached; the cache is guarded by a lock so a
/// prefetching thread may call in too.
public final class DistributedSampler {
  /// Samples in the data set.
  public let count: Int
  /// Samples per global batch `B`.
  public let globalBatch: Int
  /// This rank, 0..<worldSize.
  public let rank: Int
  /// Number of ranks `W`.
  public let worldSize: Int
  /// Seed of the shuffle.
  public let seed: UInt64
  /// Whether to shuffle; if not, every epoch is 0, 1, 2, …
  public let shuffle: Bool

  private let lock = NSLock()
  private var cachedEpoch: Int?
  private var cachedOrder: [Int] = []

  /// Samples per rank per batch (`B / W`).
  public var localBatch: Int { globalBatch / worldSize }
  /// Global batches per epoch, dropping the incomplete tail: `count / globalBatch`.
  public var batchesPerEpoch: Int { count / globalBatch }

  /// - Throws: `DataError.invalidArgument` if `globalBatch` is not divisible by `worldSize`,
  ///   exceeds `count`, or the rank is out of range.
  public init(
    count: Int, globalBatch: Int, rank: Int = 0, worldSize: Int = 1, seed: UInt64,
    shuffle: Bool = true
  ) throws {
    guard worldSize > 0, rank >= 0, rank < worldSize else {
      throw DataError.invalidArgument("sampler: rank \(rank) is not in 0..<\(worldSize)")
    }
    guard globalBatch > 0 else {
      throw DataError.invalidArgument("sampler: global batch \(globalBatch) must be positive")
    }
    guard globalBatch % worldSize == 0 else {
      throw DataError.invalidArgument(
        "sampler: global batch \(globalBatch) is not divisible by the \(worldSize) ranks; "
          + "choose a multiple of \(worldSize)")
    }
    guard globalBatch <= count else {
      throw DataError.invalidArgument(
        "sampler: global batch \(globalBatch) is larger than the \(count) samples in the data set")
    }
    self.count = count
    self.globalBatch = globalBatch
    self.rank = rank
    self.worldSize = worldSize
    self.seed = seed
    self.shuffle = shuffle
  }

  /// The order of all samples in `epoch` (identity if `shuffle` is false).
  public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var order = Array(0..<count)
    var rng = KeyedRandom(seed: seed, epoch: epoch, sample: 0, purpose: .shuffle)
    order.withUnsafeMutableBufferPointer { p in
      var i = p.count - 1
      while i > 0 {
        let j = rng.nextInt(below: i + 1)
        p.swapAt(i, j)
        i -= 1
      }
    }
    return order
  }

  /// The permutation of `epoch`, cached.
  public func epochOrder(_ epoch: Int) -> [Int] {
    lock.lock()
    defer { lock.unlock() }
    if cachedEpoch != epoch {
      cachedOrder = shuffle
        ? Self.permutation(count: count, seed: seed, epoch: epoch) : Array(0..<count)
      cachedEpoch = epoch
    }
    return cachedOrder
  }

  /// The `globalBatch` sample indices of global batch `batch` of `epoch`.
  public func globalIndices(epoch: Int, batch: Int) throws -> ArraySlice<Int> {
    try check(batch)
    return epochOrder(epoch)[batch * globalBatch..<(batch + 1) * globalBatch]
  }

  /// This rank's `localBatch` sample indices of global batch `batch` of `epoch`.
  public func localIndices(epoch: Int, batch: Int) throws -> [Int] {
    try check(batch)
    let start = batch * globalBatch + rank * localBatch
    return Array(epochOrder(epoch)[start..<start + localBatch])
  }

  /// A contiguous, balanced part of 0..<count for `rank` (sizes differ by at most one), for
  /// evaluation passes that must see every sample exactly once.
  public static func evaluationRange(count: Int, rank: Int, worldSize: Int) -> Range<Int> {
    let base = count / worldSize, extra = count % worldSize
    let start = rank * base + min(rank, extra)
    return start..<start + base + (rank < extra ? 1 : 0)
  }

  private func check(_ batch: Int) throws {
    guard batch >= 0 && batch < batchesPerEpoch else {
      throw DataError.indexOutOfRange(what: "sampler batch", index: batch, count: batchesPerEpoch)
    }
  }
}
