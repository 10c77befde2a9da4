/// How a rank reads the records of its part of a global batch from a record shard: with
/// `pread` (the default, and a world of one) or through MPI-IO (`Dist.MPIShardReader`:
/// collective `MPI_File_read_at_all`, so a parallel file system can aggregate the ranks'
/// requests, or independent `MPI_File_read_at`).
///
/// A collective reader needs every rank to make the same sequence of calls, with the same
/// paths, each with its own (possibly empty) list of offsets: batch readers therefore visit
/// every part of a set on every batch.
public protocol ShardReader: AnyObject {
  /// Reads `size` bytes at each of `offsets` (ascending) of the file at `path` into
  /// consecutive `size`-byte slots of `into`.
  func read(path: String, offsets: [Int], size: Int, into: UnsafeMutablePointer<UInt8>) throws
  /// Bytes this reader has read.
  var bytesRead: Int { get }
}

extension RecordShard {
  /// Reads the payloads of the records at `indices` (any order) into consecutive
  /// `payloadSize` slots of `into`, in that order: through `reader`, one request of ascending
  /// offsets, or with `pread` per record when `reader` is nil.
  public func readPayloads(_ indices: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    let size = header.payloadSize
    guard let reader else {
      for (slot, i) in indices.enumerated() { try readPayload(index: i, into: into + slot * size) }
      return
    }
    for i in indices where i < 0 || i >= count {
      throw DataError.indexOutOfRange(what: "\(path): record", index: i, count: count)
    }
    let order = indices.indices.sorted { indices[$0] < indices[$1] }
    let sorted = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, indices.count * size))
    defer { sorted.deallocate() }
    try reader.read(path: path, offsets: order.map { offset(indices[$0]) + labelCount }, size: size, into: sorted)
    for (k, slot) in order.enumerated() { (into + slot * size).update(from: sorted + k * size, count: size) }
  }
}

extension ImageSource {
  /// Default: one `pixels(_:into:)` per index.
  public func pixels(batch indices: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    for (slot, i) in indices.enumerated() { try pixels(i, into: into + slot * pixelsPerImage) }
  }
}
