import CMPI
import Model

/// The elementwise reduction of an all-reduce.
public enum ReduceOp: Sendable, Equatable {
  case sum
  /// The sum divided by the number of ranks (floating point only).
  case average
  case max
  case min

  var mpiOp: MPI_Op {
    switch self {
    case .sum, .average: return cmpi_op_sum()
    case .max: return cmpi_op_max()
    case .min: return cmpi_op_min()
    }
  }
}

/// MPI counts are C `int`s; buffers longer than that are sent in chunks of this many elements.
let maxChunk = Int(Int32.max)

/// `count` as an MPI count, or `DistError.countTooLarge`.
@inline(__always)
func mpiCount(_ count: Int, _ call: String) throws -> Int32 {
  guard count >= 0 && count <= maxChunk else {
    throw DistError.countTooLarge(call: call, count: count)
  }
  return Int32(count)
}

extension Communicator {
  // MARK: All-reduce (in place, zero-copy)

  /// In place, elementwise `op` over all ranks (`MPI_Allreduce` with `MPI_IN_PLACE`).
  /// - Parameters:
  ///   - buffer: `count` floats; on return every rank holds the reduced values.
  ///   - op: `.average` sums, then divides by `size`.
  public func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp = .sum)
    throws
  {
    try allReduceInPlace(
      UnsafeMutableRawPointer(buffer), count: count, stride: MemoryLayout<Float>.stride,
      datatype: cmpi_float(), op: op.mpiOp)
    if op == .average && size > 1 {
      let n = Float(size)
      for i in 0..<count { buffer[i] /= n }
    }
  }

  /// In place, elementwise `op` over all ranks, in double precision.
  public func allReduce(_ buffer: UnsafeMutablePointer<Double>, count: Int, op: ReduceOp = .sum)
    throws
  {
    try allReduceInPlace(
      UnsafeMutableRawPointer(buffer), count: count, stride: MemoryLayout<Double>.stride,
      datatype: cmpi_double(), op: op.mpiOp)
    if op == .average && size > 1 {
      let n = Double(size)
      for i in 0..<count { buffer[i] /= n }
    }
  }

  /// In place, elementwise `op` over all ranks, for 64-bit integers (sample counts, steps).
  /// - Throws: `DistError.unsupportedReduction` for `.average`.
  public func allReduce(_ buffer: UnsafeMutablePointer<Int64>, count: Int, op: ReduceOp = .sum)
    throws
  {
    if op == .average { throw DistError.unsupportedReduction("average of Int64") }
    try allReduceInPlace(
      UnsafeMutableRawPointer(buffer), count: count, stride: MemoryLayout<Int64>.stride,
      datatype: cmpi_int64(), op: op.mpiOp)
  }

  /// The reduction of one value over all ranks.
  public func allReduce(_ value: Double, op: ReduceOp = .sum) throws -> Double {
    var v = value
    try allReduce(&v, count: 1, op: op)
    return v
  }

  /// The reduction of one value over all ranks.
  public func allReduce(_ value: Int64, op: ReduceOp = .sum) throws -> Int64 {
    var v = value
    try allReduce(&v, count: 1, op: op)
    return v
  }

  private func allReduceInPlace(
    _ buffer: UnsafeMutableRawPointer, count: Int, stride: Int, datatype: MPI_Datatype,
    op: MPI_Op
  ) throws {
    try ensureLive()
    guard count >= 0 else { throw DistError.countTooLarge(call: "MPI_Allreduce", count: count) }
    var offset = 0
    repeat {
      let n = Swift.min(count - offset, maxChunk)
      try mpiCheck(
        "MPI_Allreduce",
        MPI_Allreduce(
          cmpi_in_place(), buffer + offset * stride, Int32(n), datatype, op, comm))
      offset += n
    } while offset < count
  }

  // MARK: All-gather

  /// Gathers `count` floats from every rank into `recv` (`size·count` floats) in rank
  /// order. If `send` is this rank's own slot of `recv` the gather runs in place.
  public func allGather(
    _ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>
  ) throws {
    try ensureLive()
    let n = try mpiCount(count, "MPI_Allgather")
    let inPlace = send == UnsafePointer(recv + rank * count)
    let source: UnsafeRawPointer? =
      inPlace ? UnsafeRawPointer(cmpi_in_place()) : UnsafeRawPointer(send)
    try mpiCheck(
      "MPI_Allgather", MPI_Allgather(source, n, cmpi_float(), recv, n, cmpi_float(), comm))
  }

  // MARK: Broadcast

  /// Copies `count` floats from `root`'s buffer into every other rank's buffer.
  public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, from root: Int) throws {
    try broadcastRaw(
      UnsafeMutableRawPointer(buffer), count: count, stride: MemoryLayout<Float>.stride,
      datatype: cmpi_float(), root: root)
  }

  /// Copies `count` bytes from `root`'s buffer into every other rank's buffer.
  public func broadcast(_ buffer: UnsafeMutablePointer<UInt8>, count: Int, from root: Int) throws {
    try broadcastRaw(
      UnsafeMutableRawPointer(buffer), count: count, stride: 1, datatype: cmpi_byte(), root: root)
  }

  /// `root`'s bytes, on every rank (other ranks' `bytes` are ignored). The length is
  /// broadcast first, so ranks need not know it.
  public func broadcast(bytes: [UInt8], from root: Int) throws -> [UInt8] {
    var length = Int64(bytes.count)
    try broadcastRaw(&length, count: 1, stride: 8, datatype: cmpi_int64(), root: root)
    var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length))
    try result.withUnsafeMutableBufferPointer { buffer in
      // An empty array's base address may be nil; MPI needs none for count 0.
      guard let base = buffer.baseAddress else { return }
      try broadcast(base, count: buffer.count, from: root)
    }
    return result
  }

  /// `root`'s string (UTF-8), on every rank: configuration, run names, paths.
  public func broadcast(string: String, from root: Int) throws -> String {
    String(decoding: try broadcast(bytes: Array(string.utf8), from: root), as: UTF8.self)
  }

  private func broadcastRaw(
    _ buffer: UnsafeMutableRawPointer, count: Int, stride: Int, datatype: MPI_Datatype, root: Int
  ) throws {
    try ensureLive()
    guard count >= 0 else { throw DistError.countTooLarge(call: "MPI_Bcast", count: count) }
    // An out-of-range root is passed on to MPI, which reports MPI_ERR_ROOT.
    let root32 = Int32(clamping: root)
    var offset = 0
    repeat {
      let n = Swift.min(count - offset, maxChunk)
      try mpiCheck(
        "MPI_Bcast", MPI_Bcast(buffer + offset * stride, Int32(n), datatype, root32, comm))
      offset += n
    } while offset < count
  }

  // MARK: Gather to one rank

  /// Gathers `count` floats from every rank into `root`'s `recv` (`size·count` floats,
  /// rank order). Other ranks pass `nil` (their `recv` is ignored).
  /// - Throws: `DistError.missingReceiveBuffer` on the root if `recv` is `nil` (the other
  ///   ranks are then left in the gather: the caller should `abort`).
  public func gather(
    _ send: UnsafePointer<Float>, count: Int, into recv: UnsafeMutablePointer<Float>?, root: Int
  ) throws {
    try ensureLive()
    let n = try mpiCount(count, "MPI_Gather")
    if rank == root && recv == nil { throw DistError.missingReceiveBuffer(call: "MPI_Gather") }
    try mpiCheck(
      "MPI_Gather",
      MPI_Gather(
        send, n, cmpi_float(), rank == root ? recv : nil, n, cmpi_float(), Int32(clamping: root),
        comm))
  }

  /// Gathers a byte string of any length from every rank to `root` (per-rank logs, state,
  /// metrics for rank 0 to write, DESIGN invariant 6).
  /// - Returns: on `root`, every rank's bytes in rank order; `nil` on the other ranks.
  /// - Throws: `DistError.countTooLarge` on every rank if the total exceeds `Int32.max`.
  public func gatherVariable(bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
    try ensureLive()
    // Every rank learns every length, so all ranks agree on whether the total fits
    // (a root that threw alone would leave the others waiting in MPI_Gatherv).
    var lengths = [Int64](repeating: 0, count: size)
    var mine = Int64(bytes.count)
    try mpiCheck(
      "MPI_Allgather", MPI_Allgather(&mine, 1, cmpi_int64(), &lengths, 1, cmpi_int64(), comm))
    let total = lengths.reduce(0, +)
    guard total <= Int64(Int32.max) else {
      throw DistError.countTooLarge(call: "MPI_Gatherv", count: Int(total))
    }
    let isRoot = rank == root
    var counts = lengths.map { Int32($0) }
    var displacements = [Int32](repeating: 0, count: size)
    for i in 1..<Swift.max(size, 1) { displacements[i] = displacements[i - 1] + counts[i - 1] }
    var all = [UInt8](repeating: 0, count: isRoot ? Int(total) : 0)
    try bytes.withUnsafeBufferPointer { send in
      try all.withUnsafeMutableBufferPointer { recv in
        try mpiCheck(
          "MPI_Gatherv",
          MPI_Gatherv(
            send.baseAddress, Int32(send.count), cmpi_byte(),
            isRoot ? recv.baseAddress : nil, &counts, &displacements, cmpi_byte(),
            Int32(clamping: root), comm))
      }
    }
    guard isRoot else { return nil }
    return (0..<size).map { i in
      let start = Int(displacements[i])
      return Array(all[start..<start + Int(counts[i])])
    }
  }

  // MARK: Collective (Model's protocol)

  /// In-place sum over all ranks (`Model.Collective`).
  public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    try allReduce(buffer, count: count, op: .sum)
  }

  /// In-place sum over all ranks in double precision (`Model.Collective`).
  public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
    try allReduce(buffer, count: count, op: .sum)
  }
}
