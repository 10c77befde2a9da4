/// Serves images from a record shard: pixels are read with `pread` when asked for, labels
/// come from the shard's label table (label slot 0 unless told otherwise).
public final class ShardImageSource: ImageSource {
  /// The open shard.
  public let shard: RecordShard
  /// Which of the record's labels `label(_:)` returns.
  public let labelSlot: Int

  /// Opens the shard at `path`.
  /// - Throws: `DataError` naming the file if it is invalid or has no label in `labelSlot`.
  public convenience init(path: String, labelSlot: Int = 0) throws {
    try self.init(shard: RecordShard(path: path), labelSlot: labelSlot)
  }

  /// Wraps an already opened shard.
  public init(shard: RecordShard, labelSlot: Int = 0) throws {
    guard labelSlot >= 0 && (labelSlot < shard.labelCount || (shard.labelCount == 0 && labelSlot == 0))
    else {
      throw DataError.invalidArgument(
        "\(shard.path): label slot \(labelSlot) but records hold \(shard.labelCount) labels")
    }
    self.shard = shard
    self.labelSlot = labelSlot
  }

  public var count: Int { shard.count }
  public var channels: Int { shard.header.channels }
  public var height: Int { shard.header.height }
  public var width: Int { shard.header.width }

  /// The label of sample `i`; 0 for a shard without labels.
  public func label(_ i: Int) -> Int {
    shard.labelCount == 0 ? 0 : shard.label(i, slot: labelSlot)
  }

  public func pixels(batch indices: [Int], into: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    try shard.readPayloads(indices, into: into, reader: reader)
  }

  /// Reads sample `i`'s pixels from the file.
  public func pixels(_ i: Int, into: UnsafeMutablePointer<UInt8>) throws {
    try shard.readPayload(index: i, into: into)
  }
}
