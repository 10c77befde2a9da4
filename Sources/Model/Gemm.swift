import CBLAS
import CKernels
import Dispatch
import Foundation
import Synchronization

/// Single-precision GEMM for every layer and loss, row-major as `cblas_sgemm`:
/// `C[M×N] = α·op(A)[M×K]·op(B)[K×N] + β·C` (β = 0: C is not read).
///
/// On CPUs with AVX-512F it runs Parallax's blocked kernel (`Sources/CKernels/sgemm_avx512.c`),
/// splitting N over `threads` threads; elsewhere it calls OpenBLAS. Debian's OpenBLAS 0.3.21
/// falls back to its SSE3 ("Prescott") kernels on CPUs it does not know (e.g. Emerald Rapids),
/// ~5× slower than AVX-512. `GemmReference` is the naive oracle.
///
/// Thread-safe: concurrent calls use separate pack buffers.
public enum Gemm {
  /// Whether the built-in AVX-512 kernel can run here.
  public static let builtinAvailable = px_sgemm_available() != 0
  /// The default of the layers' `usesFastKernels`: their memory-bound passes (im2col, BN,
  /// pooling, add + ReLU) run in Parallax's C kernels — AVX-512 where the CPU has it, else
  /// the kernels' portable C twins, built -O3 in every configuration — not in the Swift
  /// reference loops, which a debug build runs many times slower. (The implicit-GEMM
  /// convolution still needs the built-in GEMM: `implicitConvAvailable`.)
  public static let cKernels = true
  /// Use the built-in kernel when available (false: always OpenBLAS; for comparisons).
  public static var useBuiltin: Bool {
    get { useBuiltinState.load(ordering: .relaxed) }
    set { useBuiltinState.store(newValue, ordering: .relaxed) }
  }
  /// Threads the built-in kernel splits N over (`Runtime.configureThreads` sets it with
  /// OpenBLAS's count).
  public static var threads: Int {
    get { threadsState.load(ordering: .relaxed) }
    set { threadsState.store(newValue, ordering: .relaxed) }
  }
  // Atomics: read by every call, from any thread (simulated ranks in tests); a setting is a
  // lone value, so relaxed ordering is enough.
  private static let useBuiltinState = Atomic<Bool>(true)
  private static let threadsState = Atomic<Int>(1)

  /// Wall time spent in GEMM calls and the FLOPs (2·M·N·K) they did, summed over every call
  /// from any thread since `resetCounters()` (for `bench step`'s GEMM GFLOP/s; two clock
  /// reads per call).
  public static var counters: (seconds: Double, flops: Double) {
    (Double(nanosState.load(ordering: .relaxed)) / 1e9, Double(flopState.load(ordering: .relaxed)))
  }
  public static func resetCounters() {
    nanosState.store(0, ordering: .relaxed)
    flopState.store(0, ordering: .relaxed)
  }
  private static let nanosState = Atomic<UInt64>(0)
  private static let flopState = Atomic<UInt64>(0)
  /// Adds one call, started at `t0` (`DispatchTime` nanoseconds), of m·n·k multiply-adds.
  @inline(__always) private static func count(_ t0: UInt64, _ m: Int, _ n: Int, _ k: Int) {
    nanosState.add(DispatchTime.now().uptimeNanoseconds &- t0, ordering: .relaxed)
    flopState.add(UInt64(2 * m * n * k), ordering: .relaxed)
  }

  typealias Packs = (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)
  /// Pack buffers [MC·KC] and [KC·NC] not in use; a call takes one pair per thread and gives
  /// them back, so concurrent callers (simulated ranks in tests) never share one. Allocated on
  /// first use and kept: the steady state allocates nothing.
  nonisolated(unsafe) private static var pool: [Packs] = []
  nonisolated(unsafe) private static var allocated = 0
  private static let lock = NSLock()

  /// Scratch buffers (pointer, capacity in floats) not in use, for the NHWC weight gradient.
  nonisolated(unsafe) private static var scratchPool: [(UnsafeMutablePointer<Float>, Int)] = []
  nonisolated(unsafe) private static var scratchAllocated = 0

  /// Floats held by the pack and scratch buffers (for memory estimates).
  public static var workspaceFloats: Int {
    lock.lock()
    defer { lock.unlock() }
    return allocated * (Int(PX_MC) * Int(PX_KC) + Int(PX_KC) * Int(PX_NC)) + scratchAllocated
  }

  /// A scratch buffer of at least `count` floats (the largest free one, grown if needed).
  private static func takeScratch(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
    lock.lock()
    defer { lock.unlock() }
    if let i = scratchPool.indices.max(by: { scratchPool[$0].1 < scratchPool[$1].1 }) {
      let got = scratchPool.remove(at: i)
      if got.1 >= count { return got }
      got.0.deallocate()
      scratchAllocated -= got.1
    }
    scratchAllocated += count
    let raw = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64)
    return (raw.bindMemory(to: Float.self, capacity: count), count)
  }

  private static func giveScratch(_ b: (UnsafeMutablePointer<Float>, Int)) {
    lock.lock()
    scratchPool.append(b)
    lock.unlock()
  }

  private static func take(_ t: Int) -> [Packs] {
    lock.lock()
    defer { lock.unlock() }
    while pool.count < t {
      let a = UnsafeMutableRawPointer.allocate(
        byteCount: Int(PX_MC) * Int(PX_KC) * 4, alignment: 64)
      let b = UnsafeMutableRawPointer.allocate(
        byteCount: Int(PX_KC) * Int(PX_NC) * 4, alignment: 64)
      pool.append(
        (a.bindMemory(to: Float.self, capacity: 1), b.bindMemory(to: Float.self, capacity: 1)))
      allocated += 1
    }
    let got = Array(pool.suffix(t))
    pool.removeLast(t)
    return got
  }

  private static func give(_ p: [Packs]) {
    lock.lock()
    pool += p
    lock.unlock()
  }

  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int, precision: GemmPrecision = .fp32
  ) {
    sgemm(
      transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
      aColumns: .plain, b: b, ldb: ldb, bColumns: .plain, beta: beta, c: c, ldc: ldc,
      cColumns: .plain, bias: nil, precision: precision)
  }

  /// The general form: `aColumns` lays out A's K columns (`transA == false` only),
  /// `bColumns` B's N columns (`transB == false` only), `cColumns` C's N columns, and
  /// `bias` (nil or [M]) is added to every row of C. A convolution reads and writes its
  /// [O, S·H·W] operands in NCHW memory this way, with no relayout copies.
  ///
  /// With `precision: .bf16` every element of op(A) and op(B) is rounded to bf16 as it is
  /// packed and the products are summed in fp32 (`px_bgemm_conv`: AMX, AVX-512-BF16, or the
  /// portable loop, whatever the CPU has); C, α, β and the bias stay fp32.
  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, aColumns: GemmColumns, b: UnsafePointer<Float>, ldb: Int,
    bColumns: GemmColumns, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    cColumns: GemmColumns, bias: UnsafePointer<Float>?, precision: GemmPrecision = .fp32
  ) {
    guard m > 0, n > 0 else { return }
    precondition(!(transA && aColumns.isBlocked) && !(transB && bColumns.isBlocked))
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer { count(t0, m, n, k) }
    if precision == .bf16 {
      builtin(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
        aColumns: aColumns, b: b, ldb: ldb, bColumns: bColumns, conv: nil, beta: beta, c: c,
        ldc: ldc, cColumns: cColumns, bias: bias, precision: .bf16)
      return
    }
    let blocked = aColumns.isBlocked || bColumns.isBlocked || cColumns.isBlocked
    if let bias, !blocked && beta == 0 && !(useBuiltin && builtinAvailable) {
      // Plain operands with a bias: C's rows start as the bias, OpenBLAS adds α·op(A)·op(B).
      for i in 0..<m { (c + i * ldc).update(repeating: bias[i], count: n) }
      cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), 1, c, Int32(ldc))
      return
    }
    let general = blocked || bias != nil
    if general && !(useBuiltin && builtinAvailable) {
      GemmReference.viaDense(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
        aColumns: aColumns, b: b, ldb: ldb, bColumns: bColumns, beta: beta, c: c, ldc: ldc,
        cColumns: cColumns, bias: bias,
        gemm: { ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc in
          cblas_sgemm(
            CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), al, a, Int32(lda), b, Int32(ldb), be, c, Int32(ldc))
        })
      return
    }
    guard useBuiltin, builtinAvailable else {
      cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
      return
    }
    builtin(
      transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
      aColumns: aColumns, b: b, ldb: ldb, bColumns: bColumns, conv: nil, beta: beta, c: c,
      ldc: ldc, cColumns: cColumns, bias: bias)
  }

  /// Whether an fp32 call's result for one row or column depends on the call's other rows and
  /// columns. OpenBLAS's does, by rounding (its edge kernels handle the last rows and columns
  /// of a call in another order), so a sample's activations would depend on which samples
  /// share its call, i.e. on the per-rank batch: then 1 rank and 2 ranks disagree by
  /// rounding in forward, and a ReLU or max-pool input within rounding of a tie downstream
  /// routes the gradient elsewhere (measured: resnet18's SimCLR gradient moved by 3.5e-4 of
  /// a tensor between 1 and 2 ranks, by one flip). Layers then give each sample a call of its
  /// own (`Conv2d`, `Linear` forward). Parallax's kernel computes each element in the same
  /// order whatever the call's size.
  public static func dependsOnCallShape(_ precision: GemmPrecision) -> Bool {
    precision == .fp32 && !(useBuiltin && builtinAvailable)
  }

  /// Whether `sgemmImplicitConv` can run here (the built-in kernel is available and in use).
  public static var implicitConvAvailable: Bool { useBuiltin && builtinAvailable }

  /// `C[M×N] = α·A·B + β·C` where B [C·k·k, S·Ho·Wo] is the im2col of convolution `g` over
  /// `x` [S, C, H, W], packed straight from `x` (no column buffer). Only when
  /// `g.runsImplicitly(samples:)`.
  public static func sgemmImplicitConv(
    m: Int, samples: Int, _ g: ConvGeometry, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    x: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    cColumns: GemmColumns, bias: UnsafePointer<Float>?, precision: GemmPrecision = .fp32
  ) {
    precondition(g.runsImplicitly(samples: samples))
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer { count(t0, m, samples * g.outHeight * g.outWidth, g.channels * g.kernel * g.kernel) }
    var cv = g.cDescription(transposed: false)
    withUnsafePointer(to: &cv) { cvp in
      builtin(
        transA: false, transB: false, m: m, n: samples * g.outHeight * g.outWidth,
        k: g.channels * g.kernel * g.kernel, alpha: alpha, a: a, lda: lda, aColumns: .plain, b: x,
        ldb: 0, bColumns: .plain, conv: cvp, beta: beta, c: c, ldc: ldc, cColumns: cColumns,
        bias: bias, precision: precision)
    }
  }

  /// The weight gradient of convolution `g`, `dW [M×C·k·k] = α·dY·colᵀ + β·dW`, where `dY`
  /// [M, S·Ho·Wo] is read over NCHW memory (`aColumns`, `lda`) and colᵀ is packed straight
  /// from `x` [S, C, H, W] (no column buffer). Only when `g.runsImplicitly(samples:)`.
  public static func sgemmImplicitConvWeightGradient(
    m: Int, samples: Int, _ g: ConvGeometry, alpha: Float, dy: UnsafePointer<Float>, lda: Int,
    aColumns: GemmColumns, x: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>,
    ldc: Int, precision: GemmPrecision = .fp32
  ) {
    precondition(g.runsImplicitly(samples: samples))
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer { count(t0, m, g.channels * g.kernel * g.kernel, samples * g.outHeight * g.outWidth) }
    var cv = g.cDescription(transposed: true)
    withUnsafePointer(to: &cv) { cvp in
      builtin(
        transA: false, transB: false, m: m, n: g.channels * g.kernel * g.kernel,
        k: samples * g.outHeight * g.outWidth, alpha: alpha, a: dy, lda: lda,
        aColumns: aColumns, b: x, ldb: 0, bColumns: .plain, conv: cvp, beta: beta, c: c,
        ldc: ldc, cColumns: .plain, bias: nil, precision: precision)
    }
  }

  /// Whether `sgemmConvWeightGradientNHWC` runs convolution `g` with `m` output channels on
  /// `samples` inputs: stride-1 "same", channels a multiple of 32 and m ≤ 128 (one block of
  /// rows, where packing the implicit colᵀ costs most).
  public static func weightGradientNHWCApplies(m: Int, samples: Int, _ g: ConvGeometry) -> Bool {
    g.runsImplicitly(samples: samples) && g.isSame && g.channels % 32 == 0 && m <= Int(PX_MC)
  }

  /// The weight gradient `dW [M, C, k, k] += dY·colᵀ` of convolution `g` (as
  /// `sgemmImplicitConvWeightGradient`), computed from x transposed to NHWC: a strip of colᵀ
  /// is then one kernel tap's channels, rows of the NHWC copy, so packing copies rows instead
  /// of transposing. Only when `weightGradientNHWCApplies`.
  public static func sgemmConvWeightGradientNHWC(
    m: Int, samples: Int, _ g: ConvGeometry, dy: UnsafePointer<Float>,
    x: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>
  ) {
    precondition(weightGradientNHWCApplies(m: m, samples: samples, g))
    let t0 = DispatchTime.now().uptimeNanoseconds
    defer { count(t0, m, g.channels * g.kernel * g.kernel, samples * g.height * g.width) }
    let (c, hw, taps) = (g.channels, g.height * g.width, g.kernel * g.kernel)
    let n = taps * c
    let xt = takeScratch(samples * c * hw)
    let grad = takeScratch(m * n)
    defer {
      giveScratch(xt)
      giveScratch(grad)
    }
    let parts = max(1, min(threads, n / Int(PX_NR)))
    Parallel.perform(parts) { p in
      px_nchw_to_nhwc(xt.0, x, samples * p / parts, samples * (p + 1) / parts, c, hw)
    }
    var cv = g.cDescription(transposed: true)
    let strips = n / Int(PX_NR)
    let ps = take(parts)
    defer { give(ps) }
    let acols = px_cols(blk: hw, bst: m * hw)
    withUnsafePointer(to: &cv) { cvp in
      Parallel.perform(parts) { p in
        let j0 = strips * p / parts * Int(PX_NR)
        let j1 = strips * (p + 1) / parts * Int(PX_NR)
        guard j1 > j0 else { return }
        px_conv_wgrad_nhwc(
          m, samples, cvp, 1, dy, acols, xt.0, 0, grad.0, j0, j1, ps[p].0, ps[p].1)
      }
    }
    // grad is tap-major [M, k·k, C]; dW is [M, C, k·k].
    for o in 0..<m {
      let src = grad.0 + o * n
      let dst = dw + o * n
      for t in 0..<taps {
        for ch in 0..<c { dst[ch * taps + t] += src[t * c + ch] }
      }
    }
  }

  private static func builtin(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, aColumns: GemmColumns, b: UnsafePointer<Float>, ldb: Int,
    bColumns: GemmColumns, conv: UnsafePointer<px_conv>?, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int, cColumns: GemmColumns, bias: UnsafePointer<Float>?,
    precision: GemmPrecision = .fp32
  ) {
    guard m > 0, n > 0 else { return }
    // One entry point per precision, same arguments and pack buffers.
    let kernel = precision == .bf16 ? px_bgemm_conv : px_sgemm_conv
    let nr = Int(PX_NR)
    // Column slices of whole micro-tiles, at least 4 tiles each, so small N stays serial.
    let parts = max(1, min(threads, (n + 4 * nr - 1) / (4 * nr)))
    let ps = take(parts)
    defer { give(ps) }
    let ta: Int32 = transA ? 1 : 0
    let tb: Int32 = transB ? 1 : 0
    let ac = px_cols(blk: aColumns.block, bst: aColumns.blockStride)
    let bc = px_cols(blk: bColumns.block, bst: bColumns.blockStride)
    let cc = px_cols(blk: cColumns.block, bst: cColumns.blockStride)
    if parts == 1 {
      kernel(
        ta, tb, m, n, k, alpha, a, lda, ac, b, ldb, bc, conv, beta, c, ldc, cc, 0, bias, ps[0].0,
        ps[0].1)
      return
    }
    let tiles = (n + nr - 1) / nr
    Parallel.perform(parts) { p in
      let j0 = tiles * p / parts * nr
      let j1 = min(n, tiles * (p + 1) / parts * nr)
      guard j1 > j0 else { return }
      kernel(
        ta, tb, m, j1 - j0, k, alpha, a, lda, ac, b, ldb, bc, conv, beta, c, ldc, cc, j0, bias,
        ps[p].0, ps[p].1)
    }
  }
}

/// How a GEMM operand's columns sit in memory: plain (column j at offset j) or in blocks of
/// `block` columns `blockStride` floats apart (column j at `(j / block)·blockStride + j % block`).
/// A convolution's `[O, S·H·W]` matrix over NCHW memory is `block = H·W`, `blockStride = O·H·W`.
public struct GemmColumns: Sendable {
  public var block: Int
  public var blockStride: Int
  public static let plain = GemmColumns(block: 0, blockStride: 0)
  public init(block: Int, blockStride: Int) {
    self.block = block
    self.blockStride = blockStride
  }
  public var isBlocked: Bool { block > 0 }
  @inline(__always) public func offset(_ j: Int) -> Int {
    block > 0 ? (j / block) * blockStride + j % block : j
  }
}

/// The precision of a GEMM's operands. `.bf16` rounds op(A) and op(B) to bfloat16 (8
/// significant bits, round to nearest even) as they are packed and accumulates in fp32; the
/// output, α, β and the bias stay fp32.
public enum GemmPrecision: String, Sendable, CaseIterable {
  case fp32, bf16
}

extension Gemm {
  /// The bf16 kernels `px_bgemm_conv` runs here: `"amx"`, `"avx512-bf16"` or `"portable"`.
  public static var bf16PathName: String { bf16PathName(Int(px_bf16_path())) }
  /// The fastest bf16 path this CPU supports, by name.
  public static var bf16SupportedPathName: String {
    bf16PathName(Int(px_bf16_path_supported()))
  }
  static func bf16PathName(_ p: Int) -> String {
    if p == Int(PX_BF16_AMX) { return "amx" }
    if p == Int(PX_BF16_AVX512) { return "avx512-bf16" }
    return "portable"
  }
}

/// The naive triple loop `Gemm` is tested against (Double accumulation).
public enum GemmReference {
  /// The general form of `Gemm.sgemm` (column layouts, row bias), naively.
  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, aColumns: GemmColumns, b: UnsafePointer<Float>, ldb: Int,
    bColumns: GemmColumns, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    cColumns: GemmColumns, bias: UnsafePointer<Float>?
  ) {
    for i in 0..<m {
      for j in 0..<n {
        var acc = 0.0
        for p in 0..<k {
          let av = transA ? a[p * lda + i] : a[i * lda + aColumns.offset(p)]
          let bv = transB ? b[j * ldb + p] : b[p * ldb + bColumns.offset(j)]
          acc += Double(av) * Double(bv)
        }
        let ci = i * ldc + cColumns.offset(j)
        let old = beta == 0 ? 0 : Double(beta) * Double(c[ci])
        c[ci] = Float(Double(alpha) * acc + old + Double(bias?[i] ?? 0))
      }
    }
  }

  /// Runs the general form through a plain `gemm` on dense copies (the path for CPUs without
  /// the built-in kernel; allocates).
  static func viaDense(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, aColumns: GemmColumns, b: UnsafePointer<Float>, ldb: Int,
    bColumns: GemmColumns, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    cColumns: GemmColumns, bias: UnsafePointer<Float>?,
    gemm: (
      Bool, Bool, Int, Int, Int, Float, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int,
      Float, UnsafeMutablePointer<Float>, Int
    ) -> Void
  ) {
    var ad = [Float](repeating: 0, count: transA ? 0 : m * k)
    var bd = [Float](repeating: 0, count: transB ? 0 : k * n)
    var cd = [Float](repeating: 0, count: m * n)
    if !transA {
      for i in 0..<m { for p in 0..<k { ad[i * k + p] = a[i * lda + aColumns.offset(p)] } }
    }
    if !transB {
      for p in 0..<k { for j in 0..<n { bd[p * n + j] = b[p * ldb + bColumns.offset(j)] } }
    }
    for i in 0..<m { for j in 0..<n { cd[i * n + j] = c[i * ldc + cColumns.offset(j)] } }
    ad.withUnsafeBufferPointer { ap in
      bd.withUnsafeBufferPointer { bp in
        cd.withUnsafeMutableBufferPointer { cp in
          gemm(
            transA, transB, m, n, k, alpha, transA ? a : ap.baseAddress!, transA ? lda : max(k, 1),
            transB ? b : bp.baseAddress!, transB ? ldb : max(n, 1), beta, cp.baseAddress!, max(n, 1)
          )
        }
      }
    }
    for i in 0..<m {
      for j in 0..<n { c[i * ldc + cColumns.offset(j)] = cd[i * n + j] + (bias?[i] ?? 0) }
    }
  }

  public static func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    for i in 0..<m {
      for j in 0..<n {
        var acc = 0.0
        for p in 0..<k {
          let av = transA ? a[p * lda + i] : a[i * lda + p]
          let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
          acc += Double(av) * Double(bv)
        }
        let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
        c[i * ldc + j] = Float(Double(alpha) * acc + old)
      }
    }
  }
}

/// A square-kernel convolution's shape over one input plane set, for the implicit GEMMs.
public struct ConvGeometry: Sendable {
  public var channels: Int
  public var height: Int
  public var width: Int
  public var kernel: Int
  public var stride: Int
  public var padding: Int

  public init(channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
    self.channels = channels
    self.height = height
    self.width = width
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
  }

  public var outHeight: Int { (height + 2 * padding - kernel) / stride + 1 }
  public var outWidth: Int { (width + 2 * padding - kernel) / stride + 1 }
  /// Stride 1 with the output the size of the input (`kernel = 2·padding + 1`): the packs read
  /// contiguous runs of x; other shapes gather.
  public var isSame: Bool { stride == 1 && kernel == 2 * padding + 1 }

  /// Whether the implicit GEMMs can run this convolution on `samples` inputs here: the
  /// built-in kernel is in use, `kernel ≤ 7`, and offsets into x fit the gathers' int32.
  public func runsImplicitly(samples: Int) -> Bool {
    Gemm.implicitConvAvailable && kernel <= Int(PX_CONV_KMAX) && outHeight > 0 && outWidth > 0
      && samples * channels * height * width < Int(Int32.max)
  }

  func cDescription(transposed: Bool) -> px_conv {
    px_conv(
      C: channels, h: height, w: width, k: kernel, pad: padding, transposed: transposed ? 1 : 0,
      stride: stride, ho: outHeight, wo: outWidth)
  }
}
