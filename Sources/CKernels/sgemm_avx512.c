/* Parallax's own single-precision GEMM for x86-64 CPUs with AVX-512F (the fast path of
 * px_sgemm_conv, px_nchw_to_nhwc and px_conv_wgrad_nhwc; dispatch.c picks it at run time).
 *
 * Why: Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise recent Xeons (e.g. family 6
 * model 207) and falls back to its Prescott (SSE3) kernels, ~20 GFLOP/s on one core. This is
 * a Goto/BLIS-style blocked GEMM (pack B into KC×NR micro-panels, pack A into MR×KC
 * micro-panels, an 8×32 register-tiled micro-kernel of FMAs). The functions carry
 * `target("avx512f,fma")` so they compile whatever the package's baseline; only dispatch.c
 * calls them, after checking the CPU.
 *
 * Row-major, as cblas_sgemm(CblasRowMajor, …):
 *   C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C    (beta == 0: C is not read)
 * `packA` must hold PX_MC·PX_KC floats and `packB` PX_KC·PX_NC floats, 64-byte aligned.
 * Single-threaded: Model splits N across threads, one pair of pack buffers per thread.
 */
#include "internal.h"

#if PX_HAVE_AVX512
#include "pack_avx512.h"

/* C[mr×nr] (row stride ldc) = alpha · Ap·Bp + beta · C (+ bias[r] on row r when bias is not
 * NULL), with Ap [kc][8], Bp [kc][32]. Columns at c + 0…31, or per `cols` when not NULL. */
__attribute__((target("avx512f,fma"))) static inline void px_kernel_8x32(
    long kc, const float *a, const float *b, float *c, long ldc, float alpha, float beta, long mr,
    long nr, const float *bias, const px_tile_cols *cols) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
  __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
  __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
  __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
  __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  {
    /* The C tile is read/written after the loop: fetch its lines now, behind kc FMA steps. */
    long o0 = cols ? cols->off0 : 0, o1 = cols ? cols->off1 : 16;
    for (long r = 0; r < mr; r++) {
      _mm_prefetch((const char *)(c + r * ldc + o0), _MM_HINT_T0);
      _mm_prefetch((const char *)(c + r * ldc + o1), _MM_HINT_T0);
    }
  }
  for (long k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    __m512 x;
#define PX_ROW(r, lo, hi)                 \
  x = _mm512_set1_ps(a[r]);               \
  lo = _mm512_fmadd_ps(x, b0, lo);        \
  hi = _mm512_fmadd_ps(x, b1, hi);
    PX_ROW(0, c00, c01) PX_ROW(1, c10, c11) PX_ROW(2, c20, c21) PX_ROW(3, c30, c31)
    PX_ROW(4, c40, c41) PX_ROW(5, c50, c51) PX_ROW(6, c60, c61) PX_ROW(7, c70, c71)
#undef PX_ROW
    a += PX_MR;
    b += PX_NR;
  }
  __m512 acc[16] = {c00, c01, c10, c11, c20, c21, c30, c31,
                    c40, c41, c50, c51, c60, c61, c70, c71};
  px_store_tile(acc, c, ldc, alpha, beta, mr, nr, bias, cols);
}

/* The blocked driver (see the header comment), general form: `acols` lays out A's K columns
 * (transA == 0 only), `bcols` B's N columns (transB == 0 only) and `ccols` C's N columns;
 * logical column j of B and C is column `jorg + j` of the layout (a thread's slice of N).
 * `bias` (NULL or [M]) is added to every row of C once. */
/* As px_sgemm_ex, with `bconv` (not NULL, transB == 0) making B the implicit im2col of the
 * NCHW tensor at `B` (or, with `bconv->transposed`, its transpose; ldb and bcols unused). */
__attribute__((target("avx512f"))) void px_avx512_sgemm_conv(
    int transA, int transB, long M, long N, long K, float alpha, const float *A, long lda,
    px_cols acols, const float *B, long ldb, px_cols bcols, const px_conv *bconv, float beta,
    float *C, long ldc, px_cols ccols, long jorg, const float *bias, float *packA, float *packB) {
  if (M <= 0 || N <= 0) return;
  if (transB) B += jorg * ldb;
  if (K <= 0) {
    for (long i = 0; i < M; i++)
      for (long j = 0; j < N; j++) {
        float *c = C + i * ldc + px_coff(ccols, jorg + j);
        *c = (beta == 0 ? 0 : beta * *c) + (bias ? bias[i] : 0);
      }
    return;
  }
  /* K in equal passes of at most KC (a multiple of 16), not KC, KC, …, remainder: each pass
   * reads and writes all of C, so a short last pass costs nearly a full one. */
  long passes = (K + PX_KC - 1) / PX_KC;
  long kstep = ((K + passes - 1) / passes + 15) / 16 * 16;
  if (kstep > PX_KC) kstep = PX_KC;
  for (long jc = 0; jc < N; jc += PX_NC) {
    long nc = N - jc < PX_NC ? N - jc : PX_NC;
    for (long pc = 0; pc < K; pc += kstep) {
      long kc = K - pc < kstep ? K - pc : kstep;
      float bt = pc == 0 ? beta : 1.0f;
      /* With one block of rows, each strip of the implicit B is used once, right away: pack it
       * just before its tiles into one reused strip buffer (stays in L1) instead of writing
       * the whole KC×NC panel to L2 and reading it back. */
      int late = bconv && !bconv->transposed && M <= PX_MC;
      long loff[PX_KC];
      unsigned char ltap[PX_KC];
      if (late) {
        if (px_conv_same(bconv)) px_conv_rows(bconv, pc, kc, loff, ltap);
      } else if (bconv && bconv->transposed) px_pack_b_conv_t(packB, B, bconv, pc, kc, jorg + jc, nc);
      else if (bconv) px_pack_b_conv(packB, B, bconv, pc, kc, jorg + jc, nc);
      else px_pack_b(packB, B, ldb, transB, pc, kc, transB ? jc : jorg + jc, nc, bcols);
      for (long ic = 0; ic < M; ic += PX_MC) {
        long mc = M - ic < PX_MC ? M - ic : PX_MC;
        px_pack_a(packA, A, lda, transA, ic, mc, pc, kc, acols);
        for (long jr = 0; jr < nc; jr += PX_NR) {
          long nr = nc - jr < PX_NR ? nc - jr : PX_NR;
          long jg = jorg + jc + jr;
          px_tile_cols tc, *tcp = 0;
          if (ccols.blk) {
            px_make_tile_cols(&tc, ccols, jg, nr);
            tcp = &tc;
          }
          const float *bp = packB + jr * kc;
          if (late) {
            px_pack_b_conv_strips(packB, B, bconv, loff, ltap, pc, kc, jg, nr);
            bp = packB;
          }
          for (long ir = 0; ir < mc; ir += PX_MR) {
            long mr = mc - ir < PX_MR ? mc - ir : PX_MR;
            const float *bs = bias && pc == 0 ? bias + ic + ir : 0;
            float *c = C + (ic + ir) * ldc + (tcp ? 0 : jg);
            px_kernel_8x32(kc, packA + ir * kc, bp, c, ldc, alpha, bt, mr, nr, bs, tcp);
          }
        }
      }
    }
  }
}

/* NCHW → NHWC: dst[(s·hw + p)·C + c] = src[(s·C + c)·hw + p] for samples s0 ..< s1 (C a
 * multiple of 16), 16 channels × 16 positions per register transpose. */
__attribute__((target("avx512f"))) void px_avx512_nchw_to_nhwc(
    float *dst, const float *src, long s0, long s1, long C, long hw) {
  for (long s = s0; s < s1; s++)
    for (long c = 0; c < C; c += 16)
      for (long p = 0; p < hw; p += 16) {
        long n = hw - p < 16 ? hw - p : 16;
        __m512 r[16];
        for (long i = 0; i < 16; i++)
          r[i] = _mm512_maskz_loadu_ps(px_lanes(0, n), src + (s * C + c + i) * hw + p);
        px_store_t16x16(dst + (s * hw + p) * C + c, C, r, n);
      }
}

/* The weight gradient of a stride-1 "same" convolution from x in NHWC (`xt`, C a multiple
 * of 32), columns in tap-major order: G[o, (ki·k + kj)·C + c] = α·Σ_{s,p} dY[s, o, p] ·
 * x[s, c, p + (ki − pad, kj − pad)] + β·G, for G's columns j0 ..< j1 (multiples of 32).
 * dY is A (M = O rows, K = S·h·w columns over NCHW memory: `acols`, lda = h·w). A 32-column
 * strip of B is one tap's 32 channels: row k is a row of xt (or zeros outside the plane),
 * so packing copies rows instead of transposing im2col columns. */
__attribute__((target("avx512f"))) void px_avx512_conv_wgrad_nhwc(
    long M, long S, const px_conv *cv, float alpha, const float *dy, px_cols acols,
    const float *xt, float beta, float *G, long j0, long j1, float *packA, float *packB) {
  long h = cv->h, w = cv->w, hw = h * w, C = cv->C, kk = cv->k, pad = cv->pad, K = S * hw;
  long N = kk * kk * C;
  long passes = (K + PX_KC - 1) / PX_KC;
  long kstep = ((K + passes - 1) / passes + 15) / 16 * 16;
  if (kstep > PX_KC) kstep = PX_KC;
  for (long pc = 0; pc < K; pc += kstep) {
    long kc = K - pc < kstep ? K - pc : kstep;
    float bt = pc == 0 ? beta : 1.0f;
    /* Row k's position: its NHWC row (s·hw + p) and plane coordinates. */
    long row[PX_KC];
    int pi[PX_KC], pj[PX_KC];
    for (long k = 0; k < kc; k++) {
      long q = pc + k, p = q % hw;
      row[k] = q;
      pi[k] = (int)(p / w);
      pj[k] = (int)(p % w);
    }
    for (long ic = 0; ic < M; ic += PX_MC) {
      long mc = M - ic < PX_MC ? M - ic : PX_MC;
      px_pack_a(packA, dy, hw, 0, ic, mc, pc, kc, acols);
      for (long jr = j0; jr < j1; jr += PX_NR) {
        long tap = jr / C, c0 = jr % C, ki = tap / kk, kj = tap % kk;
        long shift = (ki - pad) * w + (kj - pad);
        for (long k = 0; k < kc; k++) {
          long y = pi[k] + ki - pad, x = pj[k] + kj - pad;
          float *d = packB + k * PX_NR;
          if (y >= 0 && y < h && x >= 0 && x < w) {
            const float *r = xt + (row[k] + shift) * C + c0;
            _mm512_store_ps(d, _mm512_loadu_ps(r));
            _mm512_store_ps(d + 16, _mm512_loadu_ps(r + 16));
          } else {
            _mm512_store_ps(d, _mm512_setzero_ps());
            _mm512_store_ps(d + 16, _mm512_setzero_ps());
          }
        }
        for (long ir = 0; ir < mc; ir += PX_MR) {
          long mr = mc - ir < PX_MR ? mc - ir : PX_MR;
          px_kernel_8x32(kc, packA + ir * kc, packB, G + (ic + ir) * N + jr, N, alpha, bt, mr,
                         PX_NR, 0, 0);
        }
      }
    }
  }
}

#endif
