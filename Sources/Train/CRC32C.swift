/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord files use,
/// and TFRecord's masked form of it.
public enum CRC32C {
  /// The byte-at-a-time lookup table of the reflected polynomial.
  static let table: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
  }

  /// The CRC-32C of `bytes` (initial value and final XOR 0xFFFFFFFF, as iSCSI and TFRecord
  /// define it): `checksum("123456789".utf8) == 0xE3069283`.
  public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
  }

  /// TFRecord's masked CRC: rotate right by 15 bits and add 0xa282ead8, so that a CRC
  /// computed over data that itself holds CRCs does not degenerate.
  public static func masked(_ crc: UInt32) -> UInt32 {
    ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
  }
}
