/// Direct-loop 1-d convolution, kept beside the im2col + GEMM `Conv1d` as its oracle (tests
/// compare the two). Slow on purpose: five nested loops, one clear formula.
///
/// With `Lo = (L + 2·padding − k) / stride + 1`:
/// `out[n, o, t] = bias[o] + Σ_{c, j} weight[o, c, j] · in[n, c, t·s − p + j]`, where
/// out-of-range input positions read as zero.
public enum Conv1dReference {
  /// Output length for an input of length `length`.
  public static func outputLength(_ length: Int, kernel: Int, stride: Int, padding: Int) -> Int {
    (length + 2 * padding - kernel) / stride + 1
  }

  /// - Parameters:
  ///   - out: [N, O, Lo], overwritten.
  ///   - input: [N, C, L].
  ///   - weight: [O, C, k].
  ///   - bias: [O] or nil.
  public static func forward(
    _ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    n: Int, c: Int, l: Int, o: Int, kernel k: Int, stride s: Int, padding p: Int
  ) {
    let lo = outputLength(l, kernel: k, stride: s, padding: p)
    for b in 0..<n {
      for oc in 0..<o {
        for t in 0..<lo {
          var acc: Float = bias?[oc] ?? 0
          for ic in 0..<c {
            for j in 0..<k {
              let x = t * s - p + j
              if x < 0 || x >= l { continue }
              acc += weight[(oc * c + ic) * k + j] * input[(b * c + ic) * l + x]
            }
          }
          out[(b * o + oc) * lo + t] = acc
        }
      }
    }
  }

  /// Mirrors `forward`.
  /// - Parameters:
  ///   - dInput: [N, C, L], overwritten.
  ///   - dWeight: [O, C, k], accumulated (`+=`).
  ///   - dBias: [O] or nil, accumulated (`+=`).
  ///   - dOut: [N, O, Lo].
  public static func backward(
    _ dInput: UnsafeMutablePointer<Float>, _ dWeight: UnsafeMutablePointer<Float>,
    _ dBias: UnsafeMutablePointer<Float>?, _ dOut: UnsafePointer<Float>,
    _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    n: Int, c: Int, l: Int, o: Int, kernel k: Int, stride s: Int, padding p: Int
  ) {
    let lo = outputLength(l, kernel: k, stride: s, padding: p)
    dInput.update(repeating: 0, count: n * c * l)
    for b in 0..<n {
      for oc in 0..<o {
        for t in 0..<lo {
          let g = dOut[(b * o + oc) * lo + t]
          dBias?[oc] += g
          for ic in 0..<c {
            for j in 0..<k {
              let x = t * s - p + j
              if x < 0 || x >= l { continue }
              let wi = (oc * c + ic) * k + j
              let xi = (b * c + ic) * l + x
              dWeight[wi] += g * input[xi]
              dInput[xi] += g * weight[wi]
            }
          }
        }
      }
    }
  }
}
