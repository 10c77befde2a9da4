import Foundation
import Model

/// A method whose schedule spans the run (BYOL's and MoCo's target momentum). The pretraining
/// loop tells it the run's optimizer steps once it knows them; evaluation and export never do,
/// and need not.
public protocol RunLengthAware: AnyObject {
  /// Optimizer steps of the whole run (K of a schedule); 0 until set.
  var totalSteps: Int { get set }
}

/// The target momentum of BYOL (Grill et al. 2020), also MoCo's cosine option: from `base` at
/// k = 0 to 1 at k = K,
///
///     m_k = 1 − (1 − m₀)·(cos(πk/K) + 1)/2
///
/// The update after optimizer step s (1-based) uses k = s − 1, so the first uses m₀ (as
/// BYOL's reference and solo-learn do). K ≤ 0 (the run's length unknown) or k ≥ K give m₀
/// and 1.
public func cosineMomentum(base m0: Double, step k: Int, total K: Int) -> Float {
  guard K > 0 else { return Float(m0) }
  guard k < K else { return 1 }
  return Float(1 - (1 - m0) * (cos(Double.pi * Double(k) / Double(K)) + 1) / 2)
}

/// A network that follows a method's trained one as an exponential moving average: BYOL's
/// target encoder and projector, MoCo's key encoder and head (DESIGN.md "Methods").
///
/// It is built by the same code as the online parts, on its own arena, so its ranges carry
/// the online names (`encoder.0.weight`, …) and pair with them by name; it starts as a copy
/// of the online values. It is never optimised: it is not in the trained arena, so neither the
/// optimizer, the gradient buckets, `model.safetensors` nor `export` see it. After each step
/// every rank moves its replica the same way, `t ← m·t + (1 − m)·θ`, with no communication.
///
/// Its parameters are the method's checkpointed state, named `target.<name>`. Its BN running
/// statistics are not: the target always runs in training mode (batch statistics) and is
/// never evaluated, so they influence nothing — and without sync BN they differ between
/// ranks, which the pre-checkpoint replica check would rightly refuse.
final class MomentumTarget<Network> {
  /// The target's own arena (its gradient buffer stays zero).
  let arena = ParameterArena()
  private let built: Network
  /// The target's layers, at the online arena's GEMM precision (`--precision` is set on the
  /// trained arena after the method is built, so it is followed here, at each use).
  var network: Network {
    arena.gemmPrecision = online.gemmPrecision
    return built
  }
  /// Target offset, online offset and size of each parameter range, in target order.
  private var pairs: [(target: Int, online: Int, count: Int)] = []
  private let online: ParameterArena
  /// Prefix of the checkpoint names.
  let statePrefix: String

  /// - Parameters:
  ///   - online: the trained arena, allocated; every range `build` registers must exist there
  ///     with the same shape.
  ///   - build: registers the target's layers on the arena it is given, with the online names.
  init(following online: ParameterArena, statePrefix: String = "target.", build: (ParameterArena) throws -> Network) throws {
    precondition(online.isAllocated, "the online arena must be allocated first")
    self.online = online
    self.statePrefix = statePrefix
    built = try build(arena)
    arena.allocate(seed: 0)
    for r in arena.parameterRanges {
      guard let o = online.parameter(named: r.name), o.shape == r.shape else {
        throw ConfigError(message: "momentum target: '\(r.name)' \(r.shape) has no online twin of that shape")
      }
      pairs.append((r.offset, o.offset, r.count))
      (arena.params + r.offset).update(from: online.params + o.offset, count: r.count)
    }
    for r in arena.bufferRanges {
      if let o = online.buffer(named: r.name), o.count == r.count {
        (arena.buffers + r.offset).update(from: online.buffers + o.offset, count: r.count)
      }
    }
  }

  /// `t ← m·t + (1 − m)·θ` for every parameter (after the optimizer step).
  func update(momentum m: Float) {
    let keep = 1 - m
    for p in pairs {
      let t = arena.params + p.target
      let o = online.params + p.online
      for i in 0..<p.count { t[i] = m * t[i] + keep * o[i] }
    }
  }

  /// The target's parameters as checkpoint entries (`target.encoder.0.weight`, …).
  func stateEntries() -> [SafeTensors.Entry] {
    arena.parameterRanges.map {
      SafeTensors.Entry(name: statePrefix + $0.name, shape: $0.shape, values: arena.values(of: $0))
    }
  }

  /// Restores one entry `stateEntries` produced; returns false when `name` is not the target's.
  func restore(name: String, values: [Float]) -> Bool {
    guard name.hasPrefix(statePrefix), let r = arena.parameter(named: String(name.dropFirst(statePrefix.count))),
      values.count == r.count
    else { return false }
    arena.set(r, values)
    return true
  }
}
