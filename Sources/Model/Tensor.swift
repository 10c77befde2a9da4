import Synchronization

/// Dimension legend used throughout Parallax: `N` batch, `C` channels, `H`, `W` spatial,
/// `L` length (1-d signals), `D` features. Activations are NCHW, as in PyTorch.

/// The shape of an activation: NCHW. A 1-d signal is `[N, C, 1, L]`, a feature matrix
/// `[N, D, 1, 1]`. A fixed four-field struct, so passing shapes around allocates nothing.
public struct Shape: Equatable, CustomStringConvertible, Sendable {
  public var n: Int
  public var c: Int
  public var h: Int
  public var w: Int

  public init(_ n: Int, _ c: Int, _ h: Int = 1, _ w: Int = 1) {
    self.n = n
    self.c = c
    self.h = h
    self.w = w
  }

  /// Elements in one sample (`C·H·W`).
  public var perSample: Int { c * h * w }
  /// Elements in the whole tensor.
  public var count: Int { n * c * h * w }
  /// Spatial positions in one channel (`H·W`).
  public var spatial: Int { h * w }

  public var description: String { "[\(n), \(c), \(h), \(w)]" }
}

/// A view of activations: a pointer owned elsewhere (usually by the layer that produced it)
/// and its shape. Valid until the owner's next forward or backward.
public struct Tensor {
  public var data: UnsafeMutablePointer<Float>
  public var shape: Shape

  public init(_ data: UnsafeMutablePointer<Float>, _ shape: Shape) {
    self.data = data
    self.shape = shape
  }

  public var count: Int { shape.count }

  /// The same memory seen with another shape of equal size (e.g. flatten).
  public func reshaped(_ s: Shape) -> Tensor {
    precondition(s.count == shape.count, "reshape \(shape) → \(s) changes the element count")
    return Tensor(data, s)
  }

  /// A copy of the values, for tests and logging (not for the hot path).
  public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
}

/// A growable, 64-byte aligned Float buffer that a layer owns for its outputs, saved values
/// and input gradients. `ensure` reallocates only when a larger batch arrives, so the steady
/// state of training allocates nothing.
public final class Storage {
  /// Bytes held by all live `Storage`s (and buffers reported with `track`), for memory
  /// estimates. An atomic: loaders and the communication thread allocate off the training
  /// thread.
  private static let tracked = Atomic<Int>(0)

  /// Bytes held by all live `Storage`s and buffers reported with `track`.
  public static var trackedBytes: Int { tracked.load(ordering: .relaxed) }

  /// Adds (or, negative, removes) bytes a layer holds outside a `Storage`.
  public static func track(bytes: Int) { tracked.add(bytes, ordering: .relaxed) }

  public private(set) var data: UnsafeMutablePointer<Float>
  public private(set) var capacity: Int

  public init(_ capacity: Int = 0) {
    self.capacity = max(capacity, 1)
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: self.capacity * MemoryLayout<Float>.stride, alignment: 64)
    data = raw.bindMemory(to: Float.self, capacity: self.capacity)
    data.initialize(repeating: 0, count: self.capacity)
    Self.track(bytes: self.capacity * 4)
  }

  deinit {
    Self.track(bytes: -capacity * 4)
    UnsafeMutableRawPointer(data).deallocate()
  }

  /// Makes room for `count` floats (contents are not preserved on growth) and returns the
  /// pointer.
  @discardableResult
  public func ensure(_ count: Int) -> UnsafeMutablePointer<Float> {
    if count > capacity {
      UnsafeMutableRawPointer(data).deallocate()
      Self.track(bytes: (count - capacity) * 4)
      capacity = count
      let raw = UnsafeMutableRawPointer.allocate(
        byteCount: capacity * MemoryLayout<Float>.stride, alignment: 64)
      data = raw.bindMemory(to: Float.self, capacity: capacity)
      data.initialize(repeating: 0, count: capacity)
    }
    return data
  }

  /// A tensor view of the first `shape.count` floats, growing if needed.
  public func tensor(_ shape: Shape) -> Tensor { Tensor(ensure(shape.count), shape) }
}
