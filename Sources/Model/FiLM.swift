/// Feature-wise linear modulation (Perez et al., AAAI 2018) around the identity:
/// `y[n, c, h, w] = x[n, c, h, w]·(1 + γ[r, c]) + β[r, c]`, where `[γ | β]` is one row of a
/// modulation matrix `m` `[R, 2C]` per input row (R = N) or one row for every input row (R = 1).
///
/// It holds no parameters: `m` is an input (the output of a hypernetwork), so backward returns
/// both `dx` and `dm`. `1 + γ` rather than `γ` keeps a zero modulation the identity.
public final class FiLM {
  public let name: String
  public let channels: Int

  /// [N, C, H, W]
  private let out = Storage()
  /// [N, C, H, W]
  private let dInput = Storage()
  /// [R, 2C]
  private let dModulation = Storage()
  /// The forward inputs, read again by backward (owned by the caller).
  private var input: Tensor?
  private var modulation: Tensor?

  public init(name: String, channels: Int) {
    precondition(channels > 0)
    self.name = name
    self.channels = channels
  }

  /// - Parameters:
  ///   - x: [N, C, H, W].
  ///   - m: [R, 2C] (R = N or 1): columns `0..<C` γ, `C..<2C` β.
  /// - Returns: y [N, C, H, W], owned by the layer.
  public func forward(_ x: Tensor, modulation m: Tensor) throws -> Tensor {
    let s = x.shape
    let C = channels
    guard s.c == C else { throw LayerShapeError(layer: name, reason: "input \(s) has \(s.c) channels, expected \(C)") }
    guard m.shape.perSample == 2 * C, m.shape.n == s.n || m.shape.n == 1 else {
      throw LayerShapeError(layer: name, reason: "modulation \(m.shape) does not fit input \(s): needs [N or 1, \(2 * C)]")
    }
    input = x
    modulation = m
    let y = out.tensor(s)
    let S = s.spatial
    let perRow = m.shape.n > 1
    for n in 0..<s.n {
      let row = m.data + (perRow ? n : 0) * 2 * C
      for c in 0..<C {
        let g = 1 + row[c], b = row[C + c]
        let base = (n * C + c) * S
        for i in 0..<S { y.data[base + i] = x.data[base + i] * g + b }
      }
    }
    return y
  }

  /// - Parameter dy: [N, C, H, W].
  /// - Returns: `dx = dy·(1 + γ)` [N, C, H, W] and `dm` [R, 2C]: `dγ = Σ_hw dy·x`,
  ///   `dβ = Σ_hw dy`, summed over n as well when R = 1. Both owned by the layer
  ///   (overwritten, not accumulated).
  public func backward(_ dy: Tensor) throws -> (dx: Tensor, dModulation: Tensor) {
    guard let x = input, let m = modulation else { preconditionFailure("\(name): backward before forward") }
    guard dy.shape == x.shape else {
      throw LayerShapeError(layer: name, reason: "backward got dy \(dy.shape), forward produced \(x.shape)")
    }
    let s = x.shape
    let C = channels
    let S = s.spatial
    let dx = dInput.tensor(s)
    let dm = dModulation.tensor(m.shape)
    dm.data.update(repeating: 0, count: dm.count)
    let perRow = m.shape.n > 1
    for n in 0..<s.n {
      let r = (perRow ? n : 0) * 2 * C
      for c in 0..<C {
        let g = 1 + m.data[r + c]
        let base = (n * C + c) * S
        var sumDy: Float = 0
        var sumDyX: Float = 0
        for i in 0..<S {
          let d = dy.data[base + i]
          dx.data[base + i] = d * g
          sumDy += d
          sumDyX += d * x.data[base + i]
        }
        dm.data[r + c] += sumDyX
        dm.data[r + C + c] += sumDy
      }
    }
    return (dx, dm)
  }
}
