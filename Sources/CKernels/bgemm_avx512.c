/* Parallax's bf16 GEMMs: fp32 operands rounded to bf16 as they are packed, products
 * accumulated in fp32. Two fast paths, chosen by dispatch.c at run time:
 *   - AVX-512-BF16: an 8×32 register tile of `vdpbf16ps` (each instruction multiplies 16 pairs
 *     of bf16 from A by 16 pairs from B and adds both products to 16 fp32 lanes);
 *   - AMX: a 32×32 block of four 16×16 fp32 tiles, `tdpbf16ps` over 32-deep k steps.
 * Same contract as px_sgemm_conv (parallax_kernels.h): plain, column-blocked and implicit-im2col
 * operands, alpha/beta/bias, a thread's slice of N through `jorg`.
 *
 * No separate cast pass: each 32-column strip of op(B) and each block of op(A) is gathered by the
 * fp32 packers (pack_avx512.h) into a staging buffer that stays in L1/L2, and converted
 * (`vcvtne2ps2bf16`: round to nearest even, denormals to zero) as it is written into the bf16
 * panel the kernels read. No bf16 copy of a whole activation tensor is ever made.
 *
 * Layouts of the bf16 panels (kp = kc rounded up to 2, or to 32 for AMX, zero-filled):
 *   B strip [kp/2][32][2]   (pair p of column j at (p·32 + j)·2: the "VNNI" layout both
 *                            vdpbf16ps and an AMX B tile read; a 16-column tile is rows of 64 B
 *                            128 B apart)
 *   A, AVX-512-BF16: 8-row strips [kp/2][8][2] (one 32-bit broadcast per row and k pair)
 *   A, AMX: rows [round32(mc)][kp] (a 16×32 tile is 16 rows of 64 B, kp·2 B apart)
 * Buffers: the bf16 A panel in packA; packB holds the bf16 B panel (KC·NC bf16, half of it),
 * then the fp32 B strip staging [KC][NR], then the fp32 A staging [MC][KC]: 672 KiB of its 1 MiB.
 */
#include "internal.h"

#if PX_HAVE_AVX512
#include "pack_avx512.h"

#include <stdint.h>
#include <string.h>

#define PX_BF16_TARGET "avx512f,avx512bw,avx512vl,avx512bf16,fma"

/* fp32 B strip [kp][32] (rows ≥ kc already zero) → bf16 [kp/2][32][2]. */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_strip_b(uint16_t *d,
                                                                          const float *s,
                                                                          long kp) {
  /* cvtne2ps(r1, r0) puts r0's 16 values in lanes 0…15 and r1's in 16…31; interleave them. */
  const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                      8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (long p = 0; p < kp / 2; p++) {
    const float *r0 = s + 2 * p * PX_NR, *r1 = r0 + PX_NR;
    __m512i lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_load_ps(r1), _mm512_load_ps(r0));
    __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(_mm512_load_ps(r1 + 16), _mm512_load_ps(r0 + 16));
    _mm512_store_si512(d + p * 64, _mm512_permutexvar_epi16(il, lo));
    _mm512_store_si512(d + p * 64 + 32, _mm512_permutexvar_epi16(il, hi));
  }
}

/* 16 values of an fp32 A strip [kc][8]: k = 2p and 2p + 1 for rows 0…7 (zeros past kc). */
__attribute__((target(PX_BF16_TARGET))) static inline __m256i px_bf16_a_pair(const float *s,
                                                                            long kc, long p) {
  long k = 2 * p;
  __m512 v = k + 1 < kc ? _mm512_loadu_ps(s + k * PX_MR)
             : k < kc   ? _mm512_maskz_loadu_ps(0xFF, s + k * PX_MR)
                        : _mm512_setzero_ps();
  return (__m256i)_mm512_cvtneps_pbh(v);
}

/* fp32 A strips [kc][8] (at s + ir·kc) → bf16 strips [kp/2][8][2] (at d + ir·kp). */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_pairs_a(uint16_t *d,
                                                                          const float *s,
                                                                          long mc, long kc,
                                                                          long kp) {
  const __m256i il = _mm256_set_epi16(15, 7, 14, 6, 13, 5, 12, 4, 11, 3, 10, 2, 9, 1, 8, 0);
  for (long ir = 0; ir < mc; ir += PX_MR) {
    const float *st = s + ir * kc;
    uint16_t *dt = d + ir * kp;
    for (long p = 0; p < kp / 2; p++)
      _mm256_storeu_si256((__m256i *)(dt + p * 16),
                          _mm256_permutexvar_epi16(il, px_bf16_a_pair(st, kc, p)));
  }
}

/* fp32 A strips [kc][8] → bf16 rows [round32(mc)][kp] (AMX's A tiles), zero padded. */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_rows_a(uint16_t *d,
                                                                         const float *s, long mc,
                                                                         long kc, long kp) {
  long mp = (mc + 31) / 32 * 32, m8 = (mc + 7) / 8 * 8;
  if (mp > m8) memset(d + m8 * kp, 0, (size_t)((mp - m8) * kp) * 2);
  for (long ir = 0; ir < mc; ir += PX_MR) {
    const float *st = s + ir * kc;
    for (long p = 0; p < kp / 2; p++) {
      uint16_t t[16];
      _mm256_storeu_si256((__m256i *)t, px_bf16_a_pair(st, kc, p));
      for (long i = 0; i < PX_MR; i++) {
        uint32_t pair = (uint32_t)t[i] | (uint32_t)t[8 + i] << 16;
        memcpy(d + (ir + i) * kp + 2 * p, &pair, 4);
      }
    }
  }
}

/* The transposed implicit im2col of a "same" convolution (px_pack_b_conv_t's op(B), rows
 * k0 ..< k0 + kc, columns j0 ..< j0 + nr) straight into the bf16 strip d [kp/2][32][2], with no
 * fp32 staging: a column of op(B) is a shifted run of x, so 32 consecutive rows of it, converted
 * by one vcvtne2ps2bf16, are already 16 (k, k + 1) pairs in order; 16 columns of such pairs are
 * one 16×16 transpose of 32-bit words. The values and their rounding are those of the staged
 * path (px_pack_b_conv_t, then px_bf16_strip_b). */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_pack_conv_t(
    uint16_t *d, const float *x, const px_conv *cv, long k0, long kc, long kp, long j0,
    long nr) {
  long hw = cv->h * cv->w, w = cv->w, kk = cv->k, pad = cv->pad;
  float *dw = (float *)d; /* 32-bit words: pair p of column j at p·32 + j */
  for (long k = 0; k < kc; k += 32) {
    long nk = kc - k < 32 ? kc - k : 32;
    int lane[2][17], runs[2] = {0, 0};
    long base[2][16], n[2] = {nk < 16 ? nk : 16, nk - 16};
    __mmask16 rowOK[2][PX_CONV_KMAX], colOK[2][PX_CONV_KMAX];
    for (int h = 0; h < 2; h++)
      if (n[h] > 0) runs[h] = px_same_runs(cv, k0 + k + 16 * h, n[h], lane[h], base[h], rowOK[h], colOK[h]);
    for (long j = 0; j < PX_NR; j += 16) {
      __m512 r[16];
      long col = j0 + j;
      long c = col / (kk * kk), ki = (col / kk) % kk, kj = col % kk;
      for (long i = 0; i < 16; i++) {
        __m512 v[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
        if (j + i < nr) {
          const float *src = x + c * hw + (ki - pad) * w + (kj - pad);
          for (int h = 0; h < 2; h++) {
            if (n[h] <= 0) continue;
            __mmask16 ok = rowOK[h][ki] & colOK[h][kj] & px_lanes(0, n[h]);
            v[h] = px_load_same_runs(src, ok, lane[h], base[h], runs[h]);
          }
          if (++kj == kk) {
            kj = 0;
            if (++ki == kk) { ki = 0; c++; }
          }
        }
        r[i] = (__m512)_mm512_cvtne2ps_pbh(v[1], v[0]);
      }
      px_store_t16x16(dw + (k / 2) * PX_NR + j, PX_NR, r, (nk + 1) / 2);
    }
  }
  for (long p = (kc + 1) / 2; p < kp / 2; p++) memset(dw + p * PX_NR, 0, PX_NR * 4);
}

/* One 32-column strip of op(B) (columns jg ..< jg + nr of the layout; jt for a transposed B
 * already offset by jorg) into the bf16 strip d [kp/2][32][2], through the fp32 staging s
 * (directly for a "same" convolution's transposed im2col). */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_pack_strip(
    uint16_t *d, float *s, const float *B, long ldb, int transB, px_cols bcols,
    const px_conv *bconv, const long *loff, const unsigned char *ltap, long pc, long kc, long kp,
    long jt, long jg, long nr) {
  if (bconv && bconv->transposed && px_conv_same(bconv)) {
    px_bf16_pack_conv_t(d, B, bconv, pc, kc, kp, jg, nr);
    return;
  }
  if (bconv && bconv->transposed) px_pack_b_conv_t(s, B, bconv, pc, kc, jg, nr);
  else if (bconv) px_pack_b_conv_strips(s, B, bconv, loff, ltap, pc, kc, jg, nr);
  else px_pack_b(s, B, ldb, transB, pc, kc, transB ? jt : jg, nr, bcols);
  if (kp > kc) memset(s + kc * PX_NR, 0, (size_t)((kp - kc) * PX_NR) * 4);
  px_bf16_strip_b(d, s, kp);
}

/* C[mr×nr] = alpha · A·B + beta · C (+ bias) from a bf16 A strip [kp/2][8][2] and B strip
 * [kp/2][32][2]: per k pair, 2 loads of B, 8 broadcasts of A and 16 vdpbf16ps. */
__attribute__((target(PX_BF16_TARGET))) static inline void px_bf16_kernel_8x32(
    long kp, const uint16_t *a, const uint16_t *b, float *c, long ldc, float alpha, float beta,
    long mr, long nr, const float *bias, const px_tile_cols *cols) {
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
  __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
  __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
  __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
  __m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  const uint32_t *ap = (const uint32_t *)a;
  for (long p = 0; p < kp / 2; p++) {
    __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 32);
    __m512bh x;
#define PX_ROW(r, lo, hi)                            \
  x = (__m512bh)_mm512_set1_epi32((int)ap[r]);       \
  lo = _mm512_dpbf16_ps(lo, x, b0);                  \
  hi = _mm512_dpbf16_ps(hi, x, b1);
    PX_ROW(0, c00, c01) PX_ROW(1, c10, c11) PX_ROW(2, c20, c21) PX_ROW(3, c30, c31)
    PX_ROW(4, c40, c41) PX_ROW(5, c50, c51) PX_ROW(6, c60, c61) PX_ROW(7, c70, c71)
#undef PX_ROW
    ap += PX_MR;
    b += 64;
  }
  __m512 acc[16] = {c00, c01, c10, c11, c20, c21, c30, c31,
                    c40, c41, c50, c51, c60, c61, c70, c71};
  px_store_tile(acc, c, ldc, alpha, beta, mr, nr, bias, cols);
}

/* AMX: ct [32][32] fp32 = A rows [32][kp] · B strip [kp/2][32][2] (kp a multiple of 32). Tiles
 * 0–3 accumulate C (rows 0–15 / 16–31 × columns 0–15 / 16–31), 4–5 hold A, 6–7 hold B. */
__attribute__((target("amx-tile,amx-bf16"))) static inline void px_amx_block_32x32(
    long kp, const uint16_t *a, const uint16_t *b, float *ct) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long k = 0; k < kp; k += 32) {
    _tile_loadd(4, a + k, kp * 2);
    _tile_loadd(5, a + 16 * kp + k, kp * 2);
    _tile_loadd(6, b + k * 32, 128);
    _tile_loadd(7, b + k * 32 + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, ct, 128);
  _tile_stored(1, ct + 16, 128);
  _tile_stored(2, ct + 16 * 32, 128);
  _tile_stored(3, ct + 16 * 32 + 16, 128);
}

/* The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes. */
typedef struct {
  uint8_t palette, start_row, reserved0[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} px_tilecfg;

__attribute__((target("amx-tile"))) void px_amx_configure(void) {
  px_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) static void px_amx_release(void) { _tile_release(); }

/* The driver of both paths (see the header comment); `amx` picks the kernel. */
__attribute__((target(PX_BF16_TARGET))) static void px_bgemm_driver(
    int amx, int transA, int transB, long M, long N, long K, float alpha, const float *A,
    long lda, px_cols acols, const float *B, long ldb, px_cols bcols, const px_conv *bconv,
    float beta, float *C, long ldc, px_cols ccols, long jorg, const float *bias, float *packA,
    float *packB) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    /* No products: C = beta·C + bias, exactly as the fp32 path. */
    px_avx512_sgemm_conv(transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, bconv,
                         beta, C, ldc, ccols, jorg, bias, packA, packB);
    return;
  }
  if (transB) B += jorg * ldb;
  uint16_t *pa = (uint16_t *)packA, *pb = (uint16_t *)packB;
  float *sb = packB + PX_KC * PX_NC / 2; /* fp32 B strip [KC][NR] */
  float *sa = sb + PX_KC * PX_NR;         /* fp32 A block, strips [kc][MR] */
  long kalign = amx ? 32 : 2, mstep = amx ? 32 : PX_MR;
  /* K in equal passes of at most KC, each a multiple of 32 (see px_avx512_sgemm_conv). */
  long passes = (K + PX_KC - 1) / PX_KC;
  long kstep = ((K + passes - 1) / passes + 31) / 32 * 32;
  if (kstep > PX_KC) kstep = PX_KC;
  if (amx) px_amx_configure();
  for (long jc = 0; jc < N; jc += PX_NC) {
    long nc = N - jc < PX_NC ? N - jc : PX_NC;
    for (long pc = 0; pc < K; pc += kstep) {
      long kc = K - pc < kstep ? K - pc : kstep;
      long kp = (kc + kalign - 1) / kalign * kalign;
      float bt = pc == 0 ? beta : 1.0f;
      long loff[PX_KC];
      unsigned char ltap[PX_KC];
      if (bconv && !bconv->transposed && px_conv_same(bconv)) px_conv_rows(bconv, pc, kc, loff, ltap);
      /* With one block of rows each B strip is used once, right away: convert it just before
       * its tiles into one reused strip (stays in L1), as the fp32 driver's late packing. */
      int late = M <= PX_MC;
      if (!late)
        for (long jr = 0; jr < nc; jr += PX_NR) {
          long nr = nc - jr < PX_NR ? nc - jr : PX_NR;
          px_bf16_pack_strip(pb + jr * kp, sb, B, ldb, transB, bcols, bconv, loff, ltap, pc, kc,
                             kp, jc + jr, jorg + jc + jr, nr);
        }
      for (long ic = 0; ic < M; ic += PX_MC) {
        long mc = M - ic < PX_MC ? M - ic : PX_MC;
        px_pack_a(sa, A, lda, transA, ic, mc, pc, kc, acols);
        if (amx) px_bf16_rows_a(pa, sa, mc, kc, kp);
        else px_bf16_pairs_a(pa, sa, mc, kc, kp);
        for (long jr = 0; jr < nc; jr += PX_NR) {
          long nr = nc - jr < PX_NR ? nc - jr : PX_NR;
          long jg = jorg + jc + jr;
          px_tile_cols tc, *tcp = 0;
          if (ccols.blk) {
            px_make_tile_cols(&tc, ccols, jg, nr);
            tcp = &tc;
          }
          const uint16_t *bp = pb + jr * kp;
          if (late) {
            px_bf16_pack_strip(pb, sb, B, ldb, transB, bcols, bconv, loff, ltap, pc, kc, kp,
                               jc + jr, jg, nr);
            bp = pb;
          }
          for (long ir = 0; ir < mc; ir += mstep) {
            long mr = mc - ir < mstep ? mc - ir : mstep;
            const float *bs = bias && pc == 0 ? bias + ic + ir : 0;
            float *c = C + (ic + ir) * ldc + (tcp ? 0 : jg);
            if (!amx) {
              px_bf16_kernel_8x32(kp, pa + ir * kp, bp, c, ldc, alpha, bt, mr, nr, bs, tcp);
              continue;
            }
            float ct[32 * 32] __attribute__((aligned(64)));
            px_amx_block_32x32(kp, pa + ir * kp, bp, ct);
            for (long g = 0; g < mr; g += 8) {
              __m512 acc[16];
              for (long r = 0; r < 8; r++) {
                acc[2 * r] = _mm512_load_ps(ct + (g + r) * 32);
                acc[2 * r + 1] = _mm512_load_ps(ct + (g + r) * 32 + 16);
              }
              px_store_tile(acc, c + g * ldc, ldc, alpha, bt, mr - g < 8 ? mr - g : 8, nr,
                            bs ? bs + g : 0, tcp);
            }
          }
        }
      }
    }
  }
  if (amx) px_amx_release();
}

void px_avx512bf16_bgemm_conv(int transA, int transB, long M, long N, long K, float alpha,
                              const float *A, long lda, px_cols acols, const float *B, long ldb,
                              px_cols bcols, const px_conv *bconv, float beta, float *C,
                              long ldc, px_cols ccols, long jorg, const float *bias,
                              float *packA, float *packB) {
  px_bgemm_driver(0, transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, bconv, beta,
                  C, ldc, ccols, jorg, bias, packA, packB);
}

void px_amx_bgemm_conv(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A, long lda, px_cols acols, const float *B, long ldb,
                       px_cols bcols, const px_conv *bconv, float beta, float *C, long ldc,
                       px_cols ccols, long jorg, const float *bias, float *packA,
                       float *packB) {
  px_bgemm_driver(1, transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, bconv, beta,
                  C, ldc, ccols, jorg, bias, packA, packB);
}

#endif
