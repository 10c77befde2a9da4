/* Run-time dispatch: every public px_* kernel runs its AVX-512F version when this build has it
 * and the CPU and OS support it (checked once), else its portable C version. */
#include "internal.h"

#include <stdatomic.h>

#if PX_HAVE_AVX512
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

/* 1 when the CPU and the OS support AVX-512F and FMA (XCR0 saves SSE, AVX, opmask, ZMM0-15
 * upper halves and ZMM16-31). */
static int px_cpu_has_avx512(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)) || !(c & (1u << 12))) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xE6u) != 0xE6u) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return (b >> 16) & 1u;
}
#endif

/* −1 until first asked; then the supported path, and the path in use. Racing first calls
 * compute the same value. */
static _Atomic int px_supported = -1;
static _Atomic int px_active = -1;

int px_path_compiled(void) { return PX_HAVE_AVX512 ? PX_PATH_AVX512 : PX_PATH_PORTABLE; }

int px_path_supported(void) {
  int s = atomic_load_explicit(&px_supported, memory_order_relaxed);
  if (s < 0) {
#if PX_HAVE_AVX512
    s = px_cpu_has_avx512() ? PX_PATH_AVX512 : PX_PATH_PORTABLE;
#else
    s = PX_PATH_PORTABLE;
#endif
    atomic_store_explicit(&px_supported, s, memory_order_relaxed);
  }
  return s;
}

int px_path(void) {
  int p = atomic_load_explicit(&px_active, memory_order_relaxed);
  if (p >= 0) return p;
  int expected = -1;
  atomic_compare_exchange_strong(&px_active, &expected, px_path_supported());
  return atomic_load_explicit(&px_active, memory_order_relaxed);
}

int px_path_force(int path) {
  int s = px_path_supported();
  int p = path < PX_PATH_PORTABLE ? PX_PATH_PORTABLE : path > s ? s : path;
  int old = px_path();
  atomic_store_explicit(&px_active, p, memory_order_relaxed);
  return old;
}

int px_sgemm_available(void) { return px_path_supported() == PX_PATH_AVX512; }

#if PX_HAVE_AVX512
#define PX_DISPATCH(name, params, args)                   \
  void px_##name params {                                 \
    if (px_path() == PX_PATH_AVX512) px_avx512_##name args; \
    else px_portable_##name args;                         \
  }
#else
#define PX_DISPATCH(name, params, args) \
  void px_##name params { px_portable_##name args; }
#endif
PX_KERNELS(PX_DISPATCH)
#undef PX_DISPATCH

void px_sgemm_ex(int transA, int transB, long M, long N, long K, float alpha, const float *A,
                 long lda, px_cols acols, const float *B, long ldb, px_cols bcols, float beta,
                 float *C, long ldc, px_cols ccols, long jorg, const float *bias, float *packA,
                 float *packB) {
  px_sgemm_conv(transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, 0, beta, C, ldc,
                ccols, jorg, bias, packA, packB);
}

void px_sgemm(int transA, int transB, long M, long N, long K, float alpha, const float *A,
              long lda, const float *B, long ldb, float beta, float *C, long ldc, float *packA,
              float *packB) {
  px_cols plain = {0, 0};
  px_sgemm_ex(transA, transB, M, N, K, alpha, A, lda, plain, B, ldb, plain, beta, C, ldc, plain,
              0, 0, packA, packB);
}

/* ---- bf16 ----------------------------------------------------------------------------------- */

#if PX_HAVE_AVX512
/* AVX-512-BF16: CPUID.(7,1):EAX bit 5 (on top of the AVX-512 path's checks). */
static int px_cpu_has_avx512bf16(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 5) & 1u;
}

/* AMX-BF16 usable by this process: CPUID.(7,0):EDX bits 22 (AMX-BF16) and 24 (AMX-TILE), then
 * Linux's permission for the tile data state (ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA
 * = 18; without it the first tile instruction raises SIGILL), then XCR0 bits 17 and 18
 * (XTILECFG, XTILEDATA) enabled by the OS. */
static int px_cpu_has_amx_bf16(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!((d >> 22) & 1u) || !((d >> 24) & 1u)) return 0;
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return 0;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & (3u << 17)) == (3u << 17);
}
#endif

static _Atomic int px_bf16_supported = -1;
static _Atomic int px_bf16_active = -1;

int px_bf16_path_supported(void) {
  int s = atomic_load_explicit(&px_bf16_supported, memory_order_relaxed);
  if (s < 0) {
    s = PX_BF16_PORTABLE;
#if PX_HAVE_AVX512
    if (px_path_supported() == PX_PATH_AVX512 && px_cpu_has_avx512bf16())
      s = px_cpu_has_amx_bf16() ? PX_BF16_AMX : PX_BF16_AVX512;
#endif
    atomic_store_explicit(&px_bf16_supported, s, memory_order_relaxed);
  }
  return s;
}

int px_bf16_path(void) {
  int p = atomic_load_explicit(&px_bf16_active, memory_order_relaxed);
  if (p >= 0) return p;
  int expected = -1;
  atomic_compare_exchange_strong(&px_bf16_active, &expected, px_bf16_path_supported());
  return atomic_load_explicit(&px_bf16_active, memory_order_relaxed);
}

int px_bf16_path_force(int path) {
  int s = px_bf16_path_supported();
  int p = path < PX_BF16_PORTABLE ? PX_BF16_PORTABLE : path > s ? s : path;
  int old = px_bf16_path();
  atomic_store_explicit(&px_bf16_active, p, memory_order_relaxed);
  return old;
}

void px_bgemm_conv PX_BGEMM_PARAMS {
#if PX_HAVE_AVX512
  switch (px_bf16_path()) {
  case PX_BF16_AMX:
    /* AMX tiles are 32 deep: a shallower product (conv4's stem, K = 9) would multiply mostly
     * zero padding, so it goes to the AVX-512-BF16 kernel (2 deep) — same operands, rounding
     * and fp32 accumulation; the CPU has it wherever it has AMX-BF16. */
    if (K >= 32) {
      px_amx_bgemm_conv PX_BGEMM_ARGS;
      return;
    }
    px_avx512bf16_bgemm_conv PX_BGEMM_ARGS;
    return;
  case PX_BF16_AVX512: px_avx512bf16_bgemm_conv PX_BGEMM_ARGS; return;
  default: break;
  }
#endif
  px_portable_bgemm_conv PX_BGEMM_ARGS;
}
