import Synchronization
import CMPI
import Foundation

/// The element type gradients travel in. `fp32` is the arena's own type (in place,
/// zero-copy); the 16-bit types halve the bytes on the wire at the cost of rounding.
public enum WireType: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
  case fp32
  /// bfloat16: fp32's 8-bit exponent, 8-bit significand (rounding error ≤ 2⁻⁹ relative).
  case bf16
  /// IEEE half: 5-bit exponent, 11-bit significand (≤ 2⁻¹² relative), overflows past 65504
  /// and flushes magnitudes below 6·10⁻⁸ to zero.
  case fp16

  public var description: String { rawValue }
  /// Bytes per gradient on the wire.
  public var bytes: Int { self == .fp32 ? 4 : 2 }
}

/// Conversions between `Float` and the 16-bit wire types (round to nearest even).
public enum HalfPrecision {
  @inline(__always)
  public static func bf16(_ x: Float) -> UInt16 {
    let b = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x40 }
    let rounding: UInt32 = 0x7FFF + ((b >> 16) & 1)
    return UInt16(truncatingIfNeeded: (b &+ rounding) >> 16)
  }

  @inline(__always)
  public static func float(bf16 h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

  @inline(__always)
  public static func fp16(_ x: Float) -> UInt16 { Float16(x).bitPattern }

  @inline(__always)
  public static func float(fp16 h: UInt16) -> Float { Float(Float16(bitPattern: h)) }

  /// Converts `count` floats to `type` (which must be 16-bit).
  public static func encode(
    _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int,
    _ type: WireType
  ) {
    switch type {
    case .bf16: for i in 0..<count { dst[i] = bf16(src[i]) }
    case .fp16: for i in 0..<count { dst[i] = fp16(src[i]) }
    case .fp32: preconditionFailure("fp32 is not a 16-bit wire type")
    }
  }

  /// Converts `count` 16-bit values of `type` back to floats.
  public static func decode(
    _ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, count: Int,
    _ type: WireType
  ) {
    switch type {
    case .bf16: for i in 0..<count { dst[i] = float(bf16: src[i]) }
    case .fp16: for i in 0..<count { dst[i] = float(fp16: src[i]) }
    case .fp32: preconditionFailure("fp32 is not a 16-bit wire type")
    }
  }
}

/// MPI reduction operators that sum 16-bit floats (MPI has no predefined bf16/fp16 sum):
/// each pairwise addition is done in fp32 and rounded back once.
enum HalfSumOps {
  /// An `MPI_Op` handle: process-wide and immutable once created, so safe to share.
  private struct Handle: @unchecked Sendable { var op: MPI_Op }
  private static let ops = Mutex<[WireType: Handle]>([:])

  /// The commutative sum operator for `type`, created on first use (after `MPI_Init`).
  static func op(for type: WireType) throws -> MPI_Op {
    try ops.withLock { ops in
      if let h = ops[type] { return h }
      let h = Handle(op: try create(type))
      ops[type] = h
      return h
    }.op
  }

  private static func create(_ type: WireType) throws -> MPI_Op {
    var op: MPI_Op? = nil
    switch type {
    case .bf16:
      try mpiCheck(
        "MPI_Op_create",
        MPI_Op_create(
          { invec, inoutvec, len, _ in
            let a = invec!.assumingMemoryBound(to: UInt16.self)
            let b = inoutvec!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<Int(len!.pointee) {
              b[i] = HalfPrecision.bf16(
                HalfPrecision.float(bf16: a[i]) + HalfPrecision.float(bf16: b[i]))
            }
          }, 1, &op))
    case .fp16:
      try mpiCheck(
        "MPI_Op_create",
        MPI_Op_create(
          { invec, inoutvec, len, _ in
            let a = invec!.assumingMemoryBound(to: UInt16.self)
            let b = inoutvec!.assumingMemoryBound(to: UInt16.self)
            for i in 0..<Int(len!.pointee) {
              b[i] = HalfPrecision.fp16(
                HalfPrecision.float(fp16: a[i]) + HalfPrecision.float(fp16: b[i]))
            }
          }, 1, &op))
    case .fp32:
      return cmpi_op_sum()
    }
    return op!
  }
}
