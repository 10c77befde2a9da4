import Crypto
import Foundation

/// SHA-256 (FIPS 180-4) for the per-file digests in a checkpoint's `state.json`, computed by
/// swift-crypto (BoringSSL's assembly, SHA-NI where the CPU has it). This enum only keeps the
/// hex helper the checkpoint code calls; inside Train, `SHA256` names it, and the library's
/// type is `Crypto.SHA256`.
public enum SHA256 {
  /// The digest of `bytes` as 64 lowercase hex characters.
  public static func hex<D: DataProtocol>(_ bytes: D) -> String {
    hex(digest: Crypto.SHA256.hash(data: bytes))
  }

  private static func hex(digest: Crypto.SHA256.Digest) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for byte in digest {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
