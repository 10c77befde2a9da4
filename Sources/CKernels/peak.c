/* The arithmetic peak of one core, measured: a loop of independent multiply-adds on one unit,
 * timed. `bench step` and `bench peak` put achieved GFLOP/s in proportion to these figures
 * instead of a FLOP-per-cycle figure from a data sheet times the nominal clock, which is wrong
 * both ways: the clock a VM reports is not the one the core runs at, and a CPU's units differ
 * from its instruction set (AMD's Zen 4 executes a 512-bit FMA or vdpbf16ps as two 256-bit
 * halves, so it does half an Intel core's work per cycle with the same instructions).
 *
 * Each vector loop keeps 16 accumulators, so no multiply-add waits for the one before it (the
 * AMX loop four accumulator tiles, as the bf16 GEMM's block); the operands stay in registers or
 * tiles, so memory plays no part. */
#include "internal.h"

#if PX_HAVE_AVX512
#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* The thread's CPU time, not the wall clock: time the scheduler gives another process while
 * the loop runs (a neighbour on a shared machine, the other ranks) does not count against it. */
static double px_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* AVX2 and FMA, and the OS saving the YMM state (XCR0 bits 1 and 2). */
static int px_cpu_has_avx2_fma(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)) || !(c & (1u << 12))) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6u) != 6u) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return (b >> 5) & 1u;
}

/* The `asm volatile` on an operand each iteration keeps the compiler from hoisting or folding
 * the multiply-adds (their inputs never change otherwise). */
#define PX_ACC16(OP)                                                                         \
  OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13)   \
  OP(14) OP(15)

__attribute__((target("avx512f,fma"))) static double px_loop_fp32_avx512(long n) {
  __m512 c[16];
  for (int i = 0; i < 16; i++) c[i] = _mm512_setzero_ps();
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-9f);
  double t0 = px_now();
  for (long i = 0; i < n; i++) {
#define PX_OP(k) c[k] = _mm512_fmadd_ps(x, y, c[k]);
    PX_ACC16(PX_OP)
#undef PX_OP
    __asm__ volatile("" : "+v"(x));
  }
  double t = px_now() - t0;
  if (!(t > 0)) return 0; /* below the clock's resolution: no figure (the caller runs longer) */
  float s = 0;
  for (int i = 0; i < 16; i++) s += _mm512_reduce_add_ps(c[i]);
  __asm__ volatile("" : : "x"(s));
  return (double)n * 16 * 32 / t / 1e9; /* 16 lanes × (multiply + add) */
}

__attribute__((target("avx2,fma"))) static double px_loop_fp32_avx2(long n) {
  __m256 c[16];
  for (int i = 0; i < 16; i++) c[i] = _mm256_setzero_ps();
  __m256 x = _mm256_set1_ps(1.0f), y = _mm256_set1_ps(1e-9f);
  double t0 = px_now();
  for (long i = 0; i < n; i++) {
#define PX_OP(k) c[k] = _mm256_fmadd_ps(x, y, c[k]);
    PX_ACC16(PX_OP)
#undef PX_OP
    __asm__ volatile("" : "+x"(x));
  }
  double t = px_now() - t0;
  if (!(t > 0)) return 0; /* below the clock's resolution: no figure (the caller runs longer) */
  float s = 0;
  for (int i = 0; i < 16; i++) {
    float v[8];
    _mm256_storeu_ps(v, c[i]);
    for (int j = 0; j < 8; j++) s += v[j];
  }
  __asm__ volatile("" : : "x"(s));
  return (double)n * 16 * 16 / t / 1e9; /* 8 lanes × 2 */
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double px_loop_bf16_avx512(
    long n) {
  __m512 c[16];
  for (int i = 0; i < 16; i++) c[i] = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3000);
  double t0 = px_now();
  for (long i = 0; i < n; i++) {
#define PX_OP(k) c[k] = _mm512_dpbf16_ps(c[k], a, b);
    PX_ACC16(PX_OP)
#undef PX_OP
    __asm__ volatile("" : "+v"(a));
  }
  double t = px_now() - t0;
  if (!(t > 0)) return 0; /* below the clock's resolution: no figure (the caller runs longer) */
  float s = 0;
  for (int i = 0; i < 16; i++) s += _mm512_reduce_add_ps(c[i]);
  __asm__ volatile("" : : "x"(s));
  return (double)n * 16 * 64 / t / 1e9; /* 16 lanes × 2 pairs × 2 */
}

/* Four 16×16 fp32 accumulator tiles fed by two A and two B tiles (the bf16 GEMM's 32×32
 * block), `tdpbf16ps` on resident tiles: 16 × 16 × 32 products each. */
__attribute__((target("amx-tile,amx-bf16"))) static double px_loop_amx(long n) {
  px_amx_configure();
  uint16_t ab[16 * 32] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 32; i++) ab[i] = 0x3000;
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, ab, 64);
  _tile_loadd(7, ab, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  double t0 = px_now();
  for (long i = 0; i < n; i++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  double t = px_now() - t0;
  float ct[16 * 16] __attribute__((aligned(64)));
  _tile_stored(0, ct, 64);
  _tile_release();
  __asm__ volatile("" : : "m"(ct[0]) : "memory");
  if (!(t > 0)) return 0; /* below the clock's resolution: no figure (the caller runs longer) */
  return (double)n * 4 * 16 * 16 * 32 * 2 / t / 1e9;
}
#endif

int px_peak_supported(int unit) {
#if PX_HAVE_AVX512
  switch (unit) {
  case PX_PEAK_FP32_AVX512: return px_path_supported() == PX_PATH_AVX512;
  case PX_PEAK_FP32_AVX2: return px_cpu_has_avx2_fma();
  case PX_PEAK_BF16_AVX512: return px_bf16_path_supported() >= PX_BF16_AVX512;
  case PX_PEAK_BF16_AMX: return px_bf16_path_supported() == PX_BF16_AMX;
  default: return 0;
  }
#else
  (void)unit;
  return 0;
#endif
}

double px_peak_gflops(int unit, double seconds) {
  if (!px_peak_supported(unit) || !(seconds > 0)) return 0;
#if PX_HAVE_AVX512
  double (*loop)(long) = unit == PX_PEAK_FP32_AVX512    ? px_loop_fp32_avx512
                         : unit == PX_PEAK_FP32_AVX2    ? px_loop_fp32_avx2
                         : unit == PX_PEAK_BF16_AVX512  ? px_loop_bf16_avx512
                                                        : px_loop_amx;
  /* Calibrate on a short run, then three runs of about seconds/3 each; the fastest counts (CPU
   * time leaves out preemption, not a sibling hyper-thread or a lower clock for a while). */
  double perIter = unit == PX_PEAK_FP32_AVX512   ? 16.0 * 32
                   : unit == PX_PEAK_FP32_AVX2   ? 16.0 * 16
                   : unit == PX_PEAK_BF16_AVX512 ? 16.0 * 64
                                                 : 4.0 * 16 * 16 * 32 * 2;
  double rate = loop(1000), best = 0;
  for (int r = 0; r < 3; r++) {
    double iters = rate > 0 ? seconds / 3 * rate * 1e9 / perIter : 1e5;
    if (iters < 1000) iters = 1000;
    if (iters > 1e9) iters = 1e9;
    double g = loop((long)iters);
    if (g > best) best = g;
    rate = g;
  }
  return best;
#else
  return 0;
#endif
}
