#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A counter-based random generator: Philox-4x32-10 (Salmon et al., "Parallel random numbers:
/// as easy as 1, 2, 3", SC 2011) keyed by (seed, epoch, sample index, purpose).
///
/// The stream is a pure function of its key (DESIGN invariant 5): the same key gives the same
/// numbers on any rank, thread or machine, in any order of construction. Draws for a sample
/// therefore do not depend on how samples were divided among ranks.
///
/// Layout: the 64-bit Philox key is a SplitMix64 hash of (seed, purpose); the 128-bit counter
/// is (block, epoch, sample low 32 bits, sample high 32 bits). Each block yields four 32-bit
/// words, so one key can produce 2^34 words before the block counter wraps.
public struct KeyedRandom: RandomNumberGenerator {
  /// The key.
  public let seed: UInt64
  public let epoch: Int
  public let sample: Int
  public let purpose: RandomPurpose

  private let key: SIMD2<UInt32>
  private var counter: SIMD4<UInt32>
  private var buffer = SIMD4<UInt32>(repeating: 0)
  private var used = 4

  /// Creates the stream for one key.
  public init(seed: UInt64, epoch: Int, sample: Int, purpose: RandomPurpose) {
    self.seed = seed
    self.epoch = epoch
    self.sample = sample
    self.purpose = purpose
    let k = Self.splitMix64(Self.splitMix64(seed) ^ Self.splitMix64(purpose.rawValue &+ 0x5158_5045))
    key = SIMD2(UInt32(truncatingIfNeeded: k), UInt32(truncatingIfNeeded: k >> 32))
    let s = UInt64(bitPattern: Int64(sample))
    counter = SIMD4(
      0, UInt32(truncatingIfNeeded: epoch), UInt32(truncatingIfNeeded: s),
      UInt32(truncatingIfNeeded: s >> 32))
  }

  /// The next 32 random bits.
  @inline(__always)
  public mutating func next32() -> UInt32 {
    if used == 4 {
      buffer = Self.philox(counter, key: key)
      counter[0] &+= 1
      used = 0
    }
    let v = buffer[used]
    used += 1
    return v
  }

  /// The next 64 random bits (two 32-bit words, the first in the low half).
  @inline(__always)
  public mutating func next() -> UInt64 {
    let lo = UInt64(next32())
    return lo | UInt64(next32()) << 32
  }

  /// A uniform `Float` in [0, 1) with 24 random bits.
  @inline(__always)
  public mutating func nextFloat() -> Float { Float(next32() >> 8) * 0x1p-24 }

  /// A uniform `Double` in [0, 1) with 53 random bits.
  @inline(__always)
  public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

  /// A uniform `Float` in [a, b).
  @inline(__always)
  public mutating func uniform(_ a: Float, _ b: Float) -> Float { a + (b - a) * nextFloat() }

  /// A standard normal deviate (Box–Muller; one deviate per two uniforms, none cached, so the
  /// stream position after a call is always the same).
  public mutating func nextGaussian() -> Float {
    let u1 = 1 - nextDouble()  // (0, 1]: log is finite
    let u2 = nextDouble()
    return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
  }

  /// `true` with probability `p`.
  @inline(__always)
  public mutating func bernoulli(_ p: Float) -> Bool { nextFloat() < p }

  /// A uniform integer in 0..<n (Lemire's multiply-and-reject method, written out here so the
  /// result does not depend on the standard library's version). `n` must be positive.
  public mutating func nextInt(below n: Int) -> Int {
    precondition(n > 0, "nextInt(below:) needs a positive bound")
    let bound = UInt64(n)
    var m = next().multipliedFullWidth(by: bound)
    if m.low < bound {
      let threshold = (0 &- bound) % bound
      while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
    }
    return Int(m.high)
  }

  /// One Philox-4x32-10 block: ten rounds of the Philox S-box with a Weyl key schedule.
  public static func philox(_ counter: SIMD4<UInt32>, key: SIMD2<UInt32>) -> SIMD4<UInt32> {
    var c = counter
    var k = key
    for round in 0..<10 {
      if round > 0 {
        k[0] &+= 0x9E37_79B9
        k[1] &+= 0xBB67_AE85
      }
      let p0 = UInt64(0xD251_1F53) * UInt64(c[0])
      let p1 = UInt64(0xCD9E_8D57) * UInt64(c[2])
      let hi0 = UInt32(truncatingIfNeeded: p0 >> 32), lo0 = UInt32(truncatingIfNeeded: p0)
      let hi1 = UInt32(truncatingIfNeeded: p1 >> 32), lo1 = UInt32(truncatingIfNeeded: p1)
      c = SIMD4(hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0)
    }
    return c
  }

  /// SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijective 64-bit mix.
  @inline(__always)
  public static func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
