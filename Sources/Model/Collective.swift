/// The collectives that layers and losses need across ranks: sync BatchNorm and global
/// contrastive losses. `Model` never imports MPI; `Dist.Communicator` conforms to this, and
/// `LocalCollective` is the size-1 world for single-process runs and unit tests.
public protocol Collective: AnyObject {
  var rank: Int { get }
  var size: Int { get }
  /// In-place elementwise sum over all ranks.
  func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
  /// In-place elementwise sum over all ranks, in double precision (BN moments).
  func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
  /// Gathers `count` floats from every rank into `recv` (`size·count` floats), rank order.
  func allGather(_ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>)
    throws
}

/// A world of one rank: every collective is the identity.
public final class LocalCollective: Collective {
  public init() {}
  public var rank: Int { 0 }
  public var size: Int { 1 }
  public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
  public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
  public func allGather(
    _ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>
  ) {
    if UnsafePointer(recv) != send { recv.update(from: send, count: count) }
  }
}
