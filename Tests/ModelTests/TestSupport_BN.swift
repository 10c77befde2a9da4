import Model

/// Test-only stand-ins for the real `BatchNorm` (written separately), so the layer and
/// encoder tests do not depend on it.

/// A parameterless identity: lets gradient checks run through encoders without BN's
/// batch coupling.
final class IdentityNorm: Layer {
  func forward(_ x: Tensor, training: Bool) throws -> Tensor { x }
  func backward(_ dy: Tensor) throws -> Tensor { dy }
}

/// A plain, single-process BatchNorm over N·H·W per channel with PyTorch's names and rules
/// (`weight`, `bias`, `running_mean`, `running_var`; momentum 0.1, eps 1e-5, unbiased running
/// variance). Written in Double and without care for speed.
final class TestBatchNorm: Layer {
  let channels: Int
  let momentum: Double = 0.1
  let eps: Double = 1e-5
  private let arena: ParameterArena
  private let weightOffset: Int
  private let biasOffset: Int
  private let meanOffset: Int
  private let varOffset: Int
  private let out = Storage()
  private let dInput = Storage()
  private var xhat: [Double] = []
  private var invStd: [Double] = []
  private var shape = Shape(0, 0)

  init(arena: ParameterArena, name: String, channels: Int) {
    self.arena = arena
    self.channels = channels
    weightOffset = arena.register(
      "\(name).weight", shape: [channels], kind: .biasOrNorm, initializer: .ones)
    biasOffset = arena.register(
      "\(name).bias", shape: [channels], kind: .biasOrNorm, initializer: .zeros)
    meanOffset = arena.registerBuffer("\(name).running_mean", shape: [channels], initializer: .zeros)
    varOffset = arena.registerBuffer("\(name).running_var", shape: [channels], initializer: .ones)
  }

  func forward(_ x: Tensor, training: Bool) throws -> Tensor {
    precondition(training, "TestBatchNorm supports training mode only")
    shape = x.shape
    let (n, c, hw) = (x.shape.n, x.shape.c, x.shape.spatial)
    let m = Double(n * hw)
    let y = out.tensor(x.shape)
    xhat = [Double](repeating: 0, count: x.count)
    invStd = [Double](repeating: 0, count: c)
    for ch in 0..<c {
      var s = 0.0
      for b in 0..<n { for p in 0..<hw { s += Double(x.data[(b * c + ch) * hw + p]) } }
      let mean = s / m
      var v = 0.0
      for b in 0..<n {
        for p in 0..<hw {
          let d = Double(x.data[(b * c + ch) * hw + p]) - mean
          v += d * d
        }
      }
      v /= m
      let inv = 1 / (v + eps).squareRoot()
      invStd[ch] = inv
      let g = Double(arena.params[weightOffset + ch])
      let be = Double(arena.params[biasOffset + ch])
      for b in 0..<n {
        for p in 0..<hw {
          let i = (b * c + ch) * hw + p
          xhat[i] = (Double(x.data[i]) - mean) * inv
          y.data[i] = Float(g * xhat[i] + be)
        }
      }
      let rm = arena.buffers + meanOffset + ch
      let rv = arena.buffers + varOffset + ch
      rm.pointee = Float((1 - momentum) * Double(rm.pointee) + momentum * mean)
      rv.pointee = Float((1 - momentum) * Double(rv.pointee) + momentum * v * m / (m - 1))
    }
    return y
  }

  func backward(_ dy: Tensor) throws -> Tensor {
    precondition(dy.shape == shape)
    let (n, c, hw) = (shape.n, shape.c, shape.spatial)
    let m = Double(n * hw)
    let dx = dInput.tensor(shape)
    for ch in 0..<c {
      var sdy = 0.0
      var sdyx = 0.0
      for b in 0..<n {
        for p in 0..<hw {
          let i = (b * c + ch) * hw + p
          sdy += Double(dy.data[i])
          sdyx += Double(dy.data[i]) * xhat[i]
        }
      }
      arena.grads[weightOffset + ch] += Float(sdyx)
      arena.grads[biasOffset + ch] += Float(sdy)
      let k = Double(arena.params[weightOffset + ch]) * invStd[ch] / m
      for b in 0..<n {
        for p in 0..<hw {
          let i = (b * c + ch) * hw + p
          dx.data[i] = Float(k * (m * Double(dy.data[i]) - sdy - xhat[i] * sdyx))
        }
      }
    }
    return dx
  }
}
