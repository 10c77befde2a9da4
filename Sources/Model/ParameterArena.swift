import Foundation

/// How a parameter range is filled when the arena is allocated.
public enum ParameterInit: Sendable, Equatable {
  case zeros
  case ones
  /// U(-bound, bound) with bound = 1/sqrt(fanIn): PyTorch's default for Conv and Linear
  /// (kaiming_uniform with a = sqrt(5) gives the same bound for weights and biases).
  case uniformFanIn(Int)
  case constant(Float)
}

/// What a range holds: a trainable parameter (has a gradient twin) or a buffer (running
/// statistics: saved in checkpoints, no gradient).
public enum RangeKind: Sendable, Equatable {
  case weight
  /// Biases and BN affine parameters: LARS excludes them from decay and adaptation.
  case biasOrNorm
  case buffer
}

/// One named slice of the arena.
public struct NamedRange: Sendable, Equatable {
  public var name: String
  /// PyTorch-style shape, e.g. `[outChannels, inChannels, k, k]`.
  public var shape: [Int]
  public var offset: Int
  public var count: Int
  public var kind: RangeKind
  public var initializer: ParameterInit
}

/// All parameters of a model in one contiguous Float buffer, all gradients in a twin buffer
/// with the same layout, and BN running statistics in a third (DESIGN.md invariant 1).
///
/// Two phases: layers `register` their ranges while the model is built, then `allocate`
/// creates the buffers and fills them. Layers keep a reference to the arena and the offsets
/// `register` returned; pointers are valid after `allocate`.
public final class ParameterArena {
  public private(set) var parameterRanges: [NamedRange] = []
  public private(set) var bufferRanges: [NamedRange] = []
  public private(set) var parameterCount = 0
  public private(set) var bufferCount = 0
  public private(set) var isAllocated = false

  /// [parameterCount]
  public private(set) var params: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
  /// [parameterCount], same layout as `params`; backward accumulates into it.
  public private(set) var grads: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
  /// [bufferCount]: running means and variances.
  public private(set) var buffers: UnsafeMutablePointer<Float> = .allocate(capacity: 1)

  /// The operand precision of the GEMMs of the layers that hold this arena's weights (`Conv2d`,
  /// `ConvTranspose2d`, `Linear`: forward, input gradient and weight gradient). The parameters,
  /// gradients and everything else stay fp32 whatever it is; losses, which hold no arena, run
  /// fp32 GEMMs. Set before the first step (`--precision`).
  public var gemmPrecision: GemmPrecision = .fp32

  public init() {}

  deinit {
    params.deallocate()
    grads.deallocate()
    buffers.deallocate()
  }

  /// Reserves a trainable range and returns its offset in `params`/`grads`.
  public func register(
    _ name: String, shape: [Int], kind: RangeKind = .weight, initializer: ParameterInit
  ) -> Int {
    precondition(!isAllocated, "register \(name) after allocate")
    precondition(kind != .buffer)
    let count = shape.reduce(1, *)
    let r = NamedRange(
      name: name, shape: shape, offset: parameterCount, count: count, kind: kind,
      initializer: initializer)
    parameterRanges.append(r)
    parameterCount += count
    return r.offset
  }

  /// Reserves a buffer range (no gradient) and returns its offset in `buffers`.
  public func registerBuffer(_ name: String, shape: [Int], initializer: ParameterInit) -> Int {
    precondition(!isAllocated, "register \(name) after allocate")
    let count = shape.reduce(1, *)
    let r = NamedRange(
      name: name, shape: shape, offset: bufferCount, count: count, kind: .buffer,
      initializer: initializer)
    bufferRanges.append(r)
    bufferCount += count
    return r.offset
  }

  /// Allocates the three buffers and fills every range from its initializer, drawing random
  /// values from a generator seeded by `seed` in registration order.
  public func allocate(seed: UInt64) {
    precondition(!isAllocated, "allocate called twice")
    params.deallocate()
    grads.deallocate()
    buffers.deallocate()
    params = .allocate(capacity: max(parameterCount, 1))
    grads = .allocate(capacity: max(parameterCount, 1))
    buffers = .allocate(capacity: max(bufferCount, 1))
    grads.initialize(repeating: 0, count: max(parameterCount, 1))
    isAllocated = true
    var rng = SplitMix64(seed: seed)
    for r in parameterRanges { Self.fill(params + r.offset, r, &rng) }
    for r in bufferRanges { Self.fill(buffers + r.offset, r, &rng) }
  }

  private static func fill(
    _ p: UnsafeMutablePointer<Float>, _ r: NamedRange, _ rng: inout SplitMix64
  ) {
    switch r.initializer {
    case .zeros: p.update(repeating: 0, count: r.count)
    case .ones: p.update(repeating: 1, count: r.count)
    case .constant(let v): p.update(repeating: v, count: r.count)
    case .uniformFanIn(let fanIn):
      let bound = 1 / Float(fanIn).squareRoot()
      for i in 0..<r.count { p[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
    }
  }

  /// Zeroes every gradient: one fill of one buffer.
  public func zeroGrads() { grads.update(repeating: 0, count: parameterCount) }

  public func parameter(named name: String) -> NamedRange? {
    parameterRanges.first { $0.name == name }
  }

  public func buffer(named name: String) -> NamedRange? {
    bufferRanges.first { $0.name == name }
  }

  /// Copies of a parameter's values (tests, checkpoints).
  public func values(of r: NamedRange) -> [Float] {
    let base = r.kind == .buffer ? buffers : params
    return Array(UnsafeBufferPointer(start: base + r.offset, count: r.count))
  }

  public func gradient(of r: NamedRange) -> [Float] {
    Array(UnsafeBufferPointer(start: grads + r.offset, count: r.count))
  }

  /// Overwrites a range (parameter or buffer) from an array of the same size.
  public func set(_ r: NamedRange, _ values: [Float]) {
    precondition(values.count == r.count, "\(r.name): \(values.count) values for \(r.count)")
    let base = r.kind == .buffer ? buffers : params
    values.withUnsafeBufferPointer { (base + r.offset).update(from: $0.baseAddress!, count: r.count) }
  }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator for parameter
/// initialisation. Data augmentation uses its own keyed generator (DESIGN.md invariant 5).
public struct SplitMix64: RandomNumberGenerator {
  public var state: UInt64
  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in [0, 1) with 24 random bits.
  public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }
}
