/// Direct-loop 2-d convolution, kept beside the im2col + GEMM `Conv2d` as its oracle (tests
/// compare the two). Slow on purpose: seven nested loops, no blocking, one clear formula.
///
/// With `Ho = (H + 2·padding − k) / stride + 1` (and `Wo` likewise):
/// `out[n, o, i, j] = bias[o] + Σ_{c, ki, kj} weight[o, c, ki, kj] · in[n, c, i·s − p + ki, j·s − p + kj]`
/// where out-of-range input positions read as zero.
public enum Conv2dReference {
  /// Output height/width for one spatial dimension.
  public static func outputSize(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
    (size + 2 * padding - kernel) / stride + 1
  }

  /// - Parameters:
  ///   - out: [N, O, Ho, Wo], overwritten.
  ///   - input: [N, C, H, W].
  ///   - weight: [O, C, k, k].
  ///   - bias: [O] or nil.
  public static func forward(
    _ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>,
    _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    n: Int, c: Int, h: Int, w: Int, o: Int, kernel k: Int, stride s: Int, padding p: Int
  ) {
    let ho = outputSize(h, kernel: k, stride: s, padding: p)
    let wo = outputSize(w, kernel: k, stride: s, padding: p)
    for b in 0..<n {
      for oc in 0..<o {
        for i in 0..<ho {
          for j in 0..<wo {
            var acc: Float = bias?[oc] ?? 0
            for ic in 0..<c {
              for ki in 0..<k {
                let y = i * s - p + ki
                if y < 0 || y >= h { continue }
                for kj in 0..<k {
                  let x = j * s - p + kj
                  if x < 0 || x >= w { continue }
                  acc += weight[((oc * c + ic) * k + ki) * k + kj] * input[((b * c + ic) * h + y) * w + x]
                }
              }
            }
            out[((b * o + oc) * ho + i) * wo + j] = acc
          }
        }
      }
    }
  }

  /// Mirrors `forward`.
  /// - Parameters:
  ///   - dInput: [N, C, H, W], overwritten.
  ///   - dWeight: [O, C, k, k], accumulated (`+=`).
  ///   - dBias: [O] or nil, accumulated (`+=`).
  ///   - dOut: [N, O, Ho, Wo].
  ///   - input: [N, C, H, W], the forward input.
  ///   - weight: [O, C, k, k].
  public static func backward(
    _ dInput: UnsafeMutablePointer<Float>, _ dWeight: UnsafeMutablePointer<Float>,
    _ dBias: UnsafeMutablePointer<Float>?, _ dOut: UnsafePointer<Float>,
    _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    n: Int, c: Int, h: Int, w: Int, o: Int, kernel k: Int, stride s: Int, padding p: Int
  ) {
    let ho = outputSize(h, kernel: k, stride: s, padding: p)
    let wo = outputSize(w, kernel: k, stride: s, padding: p)
    dInput.update(repeating: 0, count: n * c * h * w)
    for b in 0..<n {
      for oc in 0..<o {
        for i in 0..<ho {
          for j in 0..<wo {
            let g = dOut[((b * o + oc) * ho + i) * wo + j]
            dBias?[oc] += g
            for ic in 0..<c {
              for ki in 0..<k {
                let y = i * s - p + ki
                if y < 0 || y >= h { continue }
                for kj in 0..<k {
                  let x = j * s - p + kj
                  if x < 0 || x >= w { continue }
                  let wi = ((oc * c + ic) * k + ki) * k + kj
                  let xi = ((b * c + ic) * h + y) * w + x
                  dWeight[wi] += g * input[xi]
                  dInput[xi] += g * weight[wi]
                }
              }
            }
          }
        }
      }
    }
  }
}
