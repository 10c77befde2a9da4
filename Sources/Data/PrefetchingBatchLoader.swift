import Dispatch

/// Wraps a `ContrastiveBatchLoader` so the batch after the one just returned is prepared on a
/// background queue while the caller trains on the current one.
///
/// `load(epoch:batch:into:)` returns exactly what the wrapped loader would: if the requested
/// batch is the one prefetched it is copied from the back buffer, otherwise (the first call,
/// or a jump such as a resume) it is loaded directly. Then the next batch — `batch + 1`, or
/// batch 0 of the next epoch — starts loading. The wrapped loader must not be used elsewhere
/// while this object is alive. Not thread-safe itself: call it from one thread.
///
/// `@unchecked Sendable` for the one background job: it alone touches `buffer`,
/// `pendingError` and the wrapped loader between `schedule` and the `finished` semaphore,
/// whose signal/wait orders its writes before the caller's reads.
public final class PrefetchingBatchLoader: @unchecked Sendable {
  public let loader: ContrastiveBatchLoader
  /// [2·B_local, 1, H, W] back buffer the background queue fills.
  private let buffer: UnsafeMutablePointer<Float>
  private let count: Int
  private let queue = DispatchQueue(label: "parallax.data.prefetch")
  private let finished = DispatchSemaphore(value: 0)
  private var pending: (epoch: Int, batch: Int)?
  private var pendingError: Error?

  public init(loader: ContrastiveBatchLoader) {
    self.loader = loader
    count = loader.floatsPerBatch
    buffer = .allocate(capacity: count)
  }

  deinit {
    if pending != nil { finished.wait() }
    buffer.deallocate()
  }

  /// Rows per batch (`2·B_local`) and floats per batch, as the wrapped loader.
  public var rows: Int { loader.rows }
  public var floatsPerBatch: Int { count }

  /// Writes batch `batch` of `epoch` into `x` ([2·B_local, 1, H, W]) and starts the next.
  public func load(epoch: Int, batch: Int, into x: UnsafeMutablePointer<Float>) throws {
    var served = false
    if let p = pending {
      finished.wait()
      pending = nil
      if p.epoch == epoch && p.batch == batch {
        if let error = pendingError {
          pendingError = nil
          throw error
        }
        x.update(from: buffer, count: count)
        served = true
      }
      pendingError = nil
    }
    if !served { try loader.load(epoch: epoch, batch: batch, into: x) }
    schedule(after: epoch, batch: batch)
  }

  /// Waits for any batch in flight (e.g. before changing the wrapped loader's source).
  public func drain() {
    if pending != nil {
      finished.wait()
      pending = nil
      pendingError = nil
    }
  }

  private func schedule(after epoch: Int, batch: Int) {
    let wraps = batch + 1 >= loader.sampler.batchesPerEpoch
    let nextEpoch = wraps ? epoch + 1 : epoch, nextBatch = wraps ? 0 : batch + 1
    pending = (nextEpoch, nextBatch)
    // `self` outlives the job: deinit waits for it.
    queue.async { [self] in
      do {
        try loader.load(epoch: nextEpoch, batch: nextBatch, into: buffer)
      } catch {
        pendingError = error
      }
      finished.signal()
    }
  }
}
