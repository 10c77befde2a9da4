import CKernels

/// A multiply-add unit of one core whose arithmetic peak can be measured (`px_peak_gflops`: a
/// timed loop of independent multiply-adds on register or tile operands). `bench step` puts its
/// GEMMs' GFLOP/s against the unit they run on, measured, not a data sheet's FLOP per cycle
/// times the clock a VM reports: both vary from CPU to CPU (Zen 4 runs a 512-bit FMA at half
/// an Intel core's rate per cycle, and the reported clock is the nominal one).
public enum PeakUnit: Int32, CaseIterable, Sendable {
  case fp32AVX512 = 0
  case fp32AVX2 = 1
  case bf16AVX512 = 2
  case bf16AMX = 3

  /// The instruction the loop issues, for reports.
  public var name: String {
    switch self {
    case .fp32AVX512: return "fp32 AVX-512 FMA (vfmadd…ps zmm)"
    case .fp32AVX2: return "fp32 AVX2 FMA (vfmadd…ps ymm)"
    case .bf16AVX512: return "AVX-512-BF16 (vdpbf16ps zmm)"
    case .bf16AMX: return "AMX-BF16 (tdpbf16ps)"
    }
  }

  /// Whether this build and CPU (and, for AMX, the OS's permission) run the unit's loop.
  public var isSupported: Bool { px_peak_supported(rawValue) != 0 }

  /// GFLOP/s of one thread, the fastest of three runs taking `seconds` in all; 0 where the unit
  /// is not supported.
  public func measure(seconds: Double = 0.06) -> Double {
    px_peak_gflops(rawValue, seconds)
  }

  /// The unit the GEMMs of `precision` multiply on in this process: Parallax's AVX-512 fp32
  /// kernel or OpenBLAS (AVX-512 where the CPU has it, else AVX2 — OpenBLAS picks its kernel
  /// by CPU), the bf16 path of `Gemm.bf16PathName` (the portable bf16 reference rounds and
  /// multiplies in fp32, so its unit is the fp32 one). Nil where none of the loops runs (a
  /// CPU without AVX2, or a build without the x86-64 kernels).
  public static func forGemm(_ precision: GemmPrecision) -> PeakUnit? {
    if precision == .bf16 {
      switch Gemm.bf16PathName {
      case "amx": return .bf16AMX
      case "avx512-bf16": return .bf16AVX512
      default: break
      }
    }
    if PeakUnit.fp32AVX512.isSupported { return .fp32AVX512 }
    return PeakUnit.fp32AVX2.isSupported ? .fp32AVX2 : nil
  }
}
