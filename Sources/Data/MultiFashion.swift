/// MultiFashion: the MultiMNIST construction of Sener & Koltun ("Multi-Task Learning as
/// Multi-Objective Optimization", NeurIPS 2018) applied to Fashion-MNIST. Sample `i` of a
/// split overlays two items of that split on a 36×36 canvas: item `i` with its top-left
/// corner at (0, 0) and a partner item at (6, 6), each pixel the maximum of the two where
/// they overlap (rows and columns 6..<28). Tasks: the class of the left (top-left) item and
/// of the right (bottom-right) one.
///
/// The partner of `i` is drawn from the split by a `KeyedRandom` keyed by (seed, split,
/// i, `.multiFashion`) — never the item itself — so the set is a pure function of the seed
/// and the Fashion-MNIST files: every rank and run composes the same images, nothing is
/// stored. Sener & Koltun also resize the canvas to 28×28; here it stays 36×36.
public final class MultiFashion: ImageSource {
  /// The Fashion-MNIST split the items come from.
  public let base: ImageSource
  public let seed: UInt64
  /// The item placed bottom-right on sample i's canvas.
  public let partners: [Int]

  /// Canvas side.
  public static let size = 36
  /// Where the second item's top-left corner sits (rows and columns).
  public static let offset = 6
  /// The label slots: the left item's class and the right item's.
  public static let slotNames = ["left", "right"]

  /// - Parameters:
  ///   - base: 28×28 one-channel items (a Fashion-MNIST split).
  ///   - split: part of the pairing key, so the train and test pairings are independent.
  /// - Throws: `DataError.invalidArgument` when `base` is not 1×28×28 or has fewer than 2 items.
  public init(base: ImageSource, seed: UInt64, split: FashionMNIST.Split) throws {
    guard base.channels == 1, base.height == 28, base.width == 28 else {
      throw DataError.invalidArgument(
        "MultiFashion needs 1×28×28 items, got \(base.channels)×\(base.height)×\(base.width)")
    }
    guard base.count >= 2 else { throw DataError.invalidArgument("MultiFashion needs at least 2 items, got \(base.count)") }
    self.base = base
    self.seed = seed
    let n = base.count
    let key = split == .train ? 0 : 1
    partners = (0..<n).map { i in
      var r = KeyedRandom(seed: seed, epoch: key, sample: i, purpose: .multiFashion)
      let j = r.nextInt(below: n - 1)
      return j >= i ? j + 1 : j  // uniform over the other items
    }
  }

  public var count: Int { base.count }
  public var channels: Int { 1 }
  public var height: Int { Self.size }
  public var width: Int { Self.size }

  /// The left item's class (slot 0).
  public func label(_ i: Int) -> Int { base.label(i) }
  /// Slot 0: the left item's class; slot 1: the right item's.
  public func label(_ i: Int, slot: Int) -> Int { slot == 0 ? base.label(i) : base.label(partners[i]) }

  public func pixels(_ i: Int, into out: UnsafeMutablePointer<UInt8>) throws {
    let s = Self.size, o = Self.offset
    var left = [UInt8](repeating: 0, count: 784)
    var right = [UInt8](repeating: 0, count: 784)
    try left.withUnsafeMutableBufferPointer { try base.pixels(i, into: $0.baseAddress!) }
    try right.withUnsafeMutableBufferPointer { try base.pixels(partners[i], into: $0.baseAddress!) }
    out.update(repeating: 0, count: s * s)
    for y in 0..<28 {
      for x in 0..<28 { out[y * s + x] = left[y * 28 + x] }
    }
    for y in 0..<28 {
      for x in 0..<28 {
        let p = out + (y + o) * s + x + o
        p.pointee = max(p.pointee, right[y * 28 + x])
      }
    }
  }

  public func pixels(batch indices: [Int], into out: UnsafeMutablePointer<UInt8>, reader: ShardReader?) throws {
    for (k, i) in indices.enumerated() { try pixels(i, into: out + k * Self.size * Self.size) }
  }
}

extension RandomPurpose {
  /// MultiFashion's pairing of items (outside `RandomPurpose.swift`'s reserved 0..<100).
  public static let multiFashion = RandomPurpose(rawValue: 171)
}
