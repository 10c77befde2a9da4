/* The AVX-512F packing and tile-store helpers shared by the fp32 SGEMM (sgemm_avx512.c) and
 * the bf16 GEMMs (bgemm_avx512.c, which pack through them into an fp32 strip and convert it as
 * it is written to the bf16 panel). Included only by those files, inside `#if PX_HAVE_AVX512`.
 */
#ifndef PARALLAX_PACK_AVX512_H
#define PARALLAX_PACK_AVX512_H

#include <immintrin.h>

/* Offset of logical column j in layout L (px_cols in parallax_kernels.h). */
static inline long px_coff(px_cols L, long j) { return L.blk ? (j / L.blk) * L.bst + j % L.blk : j; }

/* Lanes a ..< b of 16 (0 ≤ a ≤ b ≤ 16). */
static inline __mmask16 px_lanes(long a, long b) {
  return (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

/* Logical columns j ..< j + n (n ≤ 16) of layout L as contiguous runs: lanes
 * lane[r] ..< lane[r + 1] read s + base[r] + lane (so one masked load per run, no gather). */
typedef struct { int count; int lane[17]; long base[16]; } px_runs;
static inline void px_make_runs(px_runs *R, px_cols L, long j, long n) {
  R->count = 0;
  long t = 0;
  while (t < n) {
    long len = L.blk ? L.blk - (j + t) % L.blk : n - t;
    if (len > n - t) len = n - t;
    R->lane[R->count] = (int)t;
    R->base[R->count] = px_coff(L, j + t) - t;
    R->count++;
    t += len;
  }
  R->lane[R->count] = (int)n;
}
__attribute__((target("avx512f"))) static inline __m512 px_load_runs(const float *s,
                                                                    const px_runs *R) {
  if (R->count == 1) return _mm512_maskz_loadu_ps(px_lanes(0, R->lane[1]), s + R->base[0]);
  __m512 v = _mm512_setzero_ps();
  for (int r = 0; r < R->count; r++)
    v = _mm512_mask_loadu_ps(v, px_lanes(R->lane[r], R->lane[r + 1]), s + R->base[r]);
  return v;
}

/* Transposes rows r[0..7] (16 columns each) into d[t·8 + i] = r[i][t] for t < n (n ≤ 16). */
__attribute__((target("avx512f"))) static inline void px_store_t8x16(float *d, const __m512 *r,
                                                                    long n) {
  __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]), t1 = _mm512_unpackhi_ps(r[0], r[1]);
  __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]), t3 = _mm512_unpackhi_ps(r[2], r[3]);
  __m512 t4 = _mm512_unpacklo_ps(r[4], r[5]), t5 = _mm512_unpackhi_ps(r[4], r[5]);
  __m512 t6 = _mm512_unpacklo_ps(r[6], r[7]), t7 = _mm512_unpackhi_ps(r[6], r[7]);
  /* u[q] (rows 0-3) and u[4 + q] (rows 4-7): 128-bit lane l holds column 4l + q. */
  __m512 u[8] = {_mm512_shuffle_ps(t0, t2, 0x44), _mm512_shuffle_ps(t0, t2, 0xEE),
                 _mm512_shuffle_ps(t1, t3, 0x44), _mm512_shuffle_ps(t1, t3, 0xEE),
                 _mm512_shuffle_ps(t4, t6, 0x44), _mm512_shuffle_ps(t4, t6, 0xEE),
                 _mm512_shuffle_ps(t5, t7, 0x44), _mm512_shuffle_ps(t5, t7, 0xEE)};
  const __m512i lo = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0);
  const __m512i hi = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8);
  __m512 p[8]; /* p[q]: columns q, 4 + q; p[4 + q]: columns 8 + q, 12 + q (8 rows each). */
  for (int q = 0; q < 4; q++) {
    p[q] = _mm512_permutex2var_ps(u[q], lo, u[4 + q]);
    p[4 + q] = _mm512_permutex2var_ps(u[q], hi, u[4 + q]);
  }
  /* Column pairs (c, c + 1) and where they go. */
  __m512 o[8] = {_mm512_shuffle_f32x4(p[0], p[1], 0x44), _mm512_shuffle_f32x4(p[2], p[3], 0x44),
                 _mm512_shuffle_f32x4(p[0], p[1], 0xEE), _mm512_shuffle_f32x4(p[2], p[3], 0xEE),
                 _mm512_shuffle_f32x4(p[4], p[5], 0x44), _mm512_shuffle_f32x4(p[6], p[7], 0x44),
                 _mm512_shuffle_f32x4(p[4], p[5], 0xEE), _mm512_shuffle_f32x4(p[6], p[7], 0xEE)};
  if (n == 16) {
    for (int c = 0; c < 8; c++) _mm512_storeu_ps(d + 16 * c, o[c]);
    return;
  }
  for (int c = 0; c < 8; c++) {
    long t = 2 * c;
    if (t >= n) break;
    _mm512_mask_storeu_ps(d + 16 * c, t + 1 < n ? (__mmask16)0xFFFF : (__mmask16)0xFF, o[c]);
  }
}

/* Transposes rows r[0..15] (16 columns each) into d[t·ld + i] = r[i][t] for t < n (n ≤ 16). */
__attribute__((target("avx512f"))) static inline void px_store_t16x16(float *d, long ld,
                                                                      const __m512 *r, long n) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  /* u[4g + q]: rows 4g ..< 4g + 4, 128-bit lane l = column 4l + q. */
  for (int g = 0; g < 4; g++) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int q = 0; q < 4; q++) {
    __m512 a = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
    __m512 b = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xDD);
    __m512 c = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
    __m512 e = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xDD);
    if (q < n) _mm512_storeu_ps(d + q * ld, _mm512_shuffle_f32x4(a, c, 0x88));
    if (4 + q < n) _mm512_storeu_ps(d + (4 + q) * ld, _mm512_shuffle_f32x4(b, e, 0x88));
    if (8 + q < n) _mm512_storeu_ps(d + (8 + q) * ld, _mm512_shuffle_f32x4(a, c, 0xDD));
    if (12 + q < n) _mm512_storeu_ps(d + (12 + q) * ld, _mm512_shuffle_f32x4(b, e, 0xDD));
  }
}

/* Packs op(A)[i0 ..< i0+mc, k0 ..< k0+kc] as MR-row strips, each [kc][MR], zero-padded. */
__attribute__((target("avx512f"))) static inline void px_pack_a(
    float *dst, const float *A, long lda, int transA, long i0, long mc, long k0, long kc,
    px_cols acols) {
  for (long ir = 0; ir < mc; ir += PX_MR) {
    long mr = mc - ir < PX_MR ? mc - ir : PX_MR;
    float *d = dst + ir * kc;
    if (transA) {
      /* Row k of A holds the strip's 8 values contiguously. */
      __mmask16 m = (__mmask16)((1u << mr) - 1);
      long k = 0;
      for (; k + 2 <= kc; k += 2) {
        const float *s = A + (k0 + k) * lda + i0 + ir;
        __m512 lo = _mm512_maskz_loadu_ps(m, s);
        __m512 hi = _mm512_maskz_loadu_ps(m, s + lda);
        _mm512_storeu_ps(d + k * PX_MR, _mm512_mask_blend_ps(0xFF00, lo,
                         _mm512_permutexvar_ps(_mm512_set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0), hi)));
      }
      for (; k < kc; k++) {
        const float *s = A + (k0 + k) * lda + i0 + ir;
        _mm512_mask_storeu_ps(d + k * PX_MR, 0xFF, _mm512_maskz_loadu_ps(m, s));
      }
    } else {
      /* 16 columns of the 8 rows at a time (contiguous runs of the layout), transposed in
       * registers. */
      const float *s = A + (i0 + ir) * lda;
      for (long k = 0; k < kc; k += 16) {
        long n = kc - k < 16 ? kc - k : 16;
        px_runs R;
        px_make_runs(&R, acols, k0 + k, n);
        __m512 r[8];
        for (long i = 0; i < 8; i++)
          r[i] = i < mr ? px_load_runs(s + i * lda, &R) : _mm512_setzero_ps();
        px_store_t8x16(d + k * PX_MR, r, n);
      }
    }
  }
}

/* Packs op(B)[k0 ..< k0+kc, j0 ..< j0+nc] as NR-column strips, each [kc][NR], zero-padded. */
__attribute__((target("avx512f"))) static inline void px_pack_b(
    float *dst, const float *B, long ldb, int transB, long k0, long kc, long j0, long nc,
    px_cols bcols) {
  for (long jr = 0; jr < nc; jr += PX_NR) {
    long nr = nc - jr < PX_NR ? nc - jr : PX_NR;
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    float *d = dst + jr * kc;
    if (!transB && bcols.blk) {
      /* Blocked columns: each half of the strip as contiguous runs (one masked load each). */
      long n0 = nr < 16 ? nr : 16;
      px_runs R0, R1;
      px_make_runs(&R0, bcols, j0 + jr, n0);
      if (nr > 16) px_make_runs(&R1, bcols, j0 + jr + 16, nr - 16);
      for (long k = 0; k < kc; k++) {
        const float *s = B + (k0 + k) * ldb;
        _mm512_storeu_ps(d + k * PX_NR, px_load_runs(s, &R0));
        _mm512_storeu_ps(d + k * PX_NR + 16, nr > 16 ? px_load_runs(s, &R1) : _mm512_setzero_ps());
      }
    } else if (!transB) {
      for (long k = 0; k < kc; k++) {
        const float *s = B + (k0 + k) * ldb + j0 + jr;
        _mm512_storeu_ps(d + k * PX_NR, _mm512_maskz_loadu_ps(m0, s));
        _mm512_storeu_ps(d + k * PX_NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
      }
    } else {
      /* Column j of op(B) is row j of B: 16 rows × 16 k at a time, transposed in registers. */
      for (long h = 0; h < 2; h++) {
        long rows = nr - 16 * h;
        if (rows > 16) rows = 16;
        if (rows <= 0) {
          for (long k = 0; k < kc; k++) _mm512_storeu_ps(d + k * PX_NR + 16, _mm512_setzero_ps());
          continue;
        }
        const float *s = B + (j0 + jr + 16 * h) * ldb + k0;
        for (long k = 0; k < kc; k += 16) {
          long n = kc - k < 16 ? kc - k : 16;
          __mmask16 km = px_lanes(0, n);
          __m512 r[16];
          for (long i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(km, s + i * ldb + k) : _mm512_setzero_ps();
          px_store_t16x16(d + k * PX_NR + 16 * h, PX_NR, r, n);
        }
      }
    }
  }
}

/* Implicit im2col (px_conv in parallax_kernels.h). Stride-1 "same" convolutions
 * (k = 2·pad + 1, ho×wo = h×w) read contiguous runs of x; others gather (int32 offsets: the
 * caller keeps S·C·h·w < 2³¹). */
static inline int px_conv_same(const px_conv *cv) {
  return cv->stride == 1 && cv->ho == cv->h && cv->wo == cv->w;
}

/* For output positions pos ..< pos + n (n ≤ 16): each lane's offset in x of tap (c, ki, kj) =
 * (0, 0, 0), and per tap row/column which lanes read inside the plane. */
__attribute__((target("avx512f"))) static inline __m512i px_conv_lanes(const px_conv *cv, long pos, long n, __mmask16 *rowOK,
                                    __mmask16 *colOK) {
  long h = cv->h, w = cv->w, st = cv->stride, pad = cv->pad, kk = cv->k;
  long howo = cv->ho * cv->wo;
  int off[16] = {0};
  for (long q = 0; q < kk; q++) rowOK[q] = colOK[q] = 0;
  long s = pos / howo, p = pos % howo;
  for (long t = 0; t < n; t++) {
    long y = (p / cv->wo) * st - pad, x = (p % cv->wo) * st - pad;
    off[t] = (int)(s * cv->C * h * w + y * w + x);
    for (long q = 0; q < kk; q++) {
      if (y + q >= 0 && y + q < h) rowOK[q] |= (__mmask16)(1u << t);
      if (x + q >= 0 && x + q < w) colOK[q] |= (__mmask16)(1u << t);
    }
    if (++p == howo) { p = 0; s++; }
  }
  return _mm512_loadu_si512(off);
}

/* For positions pos ..< pos + n (n ≤ 16) of a "same" convolution's plane set: the runs of
 * lanes within one sample (lanes lane[r] ..< lane[r + 1] read x + base[r] + lane + row
 * offset; returns the run count, lane[count] = n) and per kernel row/column which lanes
 * read inside the plane. */
static inline int px_same_runs(const px_conv *cv, long pos, long n, int *lane, long *base,
                               __mmask16 *rowOK, __mmask16 *colOK) {
  long h = cv->h, w = cv->w, hw = h * w, kk = cv->k, pad = cv->pad;
  int runs = 0;
  for (long q = 0; q < kk; q++) rowOK[q] = colOK[q] = 0;
  long s = pos / hw, p = pos % hw;
  for (long t = 0; t < n; t++) {
    if (t == 0 || p == 0) {
      lane[runs] = (int)t;
      base[runs] = s * cv->C * hw + p - t;
      runs++;
    }
    long i = p / w, jj = p % w;
    for (long q = 0; q < kk; q++) {
      long y = i + q - pad, xx = jj + q - pad;
      if (y >= 0 && y < h) rowOK[q] |= (__mmask16)(1u << t);
      if (xx >= 0 && xx < w) colOK[q] |= (__mmask16)(1u << t);
    }
    if (++p == hw) { p = 0; s++; }
  }
  lane[runs] = (int)n;
  return runs;
}

/* The lanes `ok` of src + lane, read as px_same_runs' runs (lane[r] ..< lane[r + 1] at
 * src + base[r] + lane): one masked load per run, zero elsewhere. */
__attribute__((target("avx512f"))) static inline __m512 px_load_same_runs(
    const float *src, __mmask16 ok, const int *lane, const long *base, int runs) {
  __m512 v = _mm512_maskz_loadu_ps(ok & px_lanes(0, lane[1]), src + base[0]);
  for (int q = 1; q < runs; q++)
    v = _mm512_mask_loadu_ps(v, ok & px_lanes(lane[q], lane[q + 1]), src + base[q]);
  return v;
}

/* Row k's offset in x relative to the lane's own position, and its kernel tap (ki·k + kj),
 * for rows k0 ..< k0+kc (kc ≤ PX_KC) of a "same" convolution's implicit B. */
static inline void px_conv_rows(const px_conv *cv, long k0, long kc, long *off, unsigned char *tap) {
  long kk = cv->k, hw = cv->h * cv->w;
  for (long k = 0; k < kc; k++) {
    long r = k0 + k, c = r / (kk * kk), ki = (r / kk) % kk, kj = r % kk;
    off[k] = c * hw + (ki - cv->pad) * cv->w + (kj - cv->pad);
    tap[k] = (unsigned char)(ki * kk + kj);
  }
}

/* Packs rows k0 ..< k0+kc, columns j0 ..< j0+nc of a convolution's implicit B as px_pack_b
 * does. "Same" convolutions read masked runs of x, given px_conv_rows' tables for those rows
 * (`off`, `tap`); others gather (the tables are not read). */
__attribute__((target("avx512f"))) static inline void px_pack_b_conv_strips(
    float *dst, const float *x, const px_conv *cv, const long *off, const unsigned char *tap,
    long k0, long kc, long j0, long nc) {
  long kk = cv->k, hw = cv->h * cv->w, w = cv->w;
  int same = px_conv_same(cv);
  for (long jr = 0; jr < nc; jr += PX_NR) {
    long nr = nc - jr < PX_NR ? nc - jr : PX_NR;
    float *d = dst + jr * kc;
    for (long half = 0; half < 2; half++) {
      long n = nr - 16 * half;
      if (n > 16) n = 16;
      if (n <= 0) {
        for (long k = 0; k < kc; k++) _mm512_storeu_ps(d + k * PX_NR + 16, _mm512_setzero_ps());
        continue;
      }
      float *dh = d + 16 * half;
      __mmask16 rowOK[PX_CONV_KMAX], colOK[PX_CONV_KMAX];
      if (!same) {
        /* One gather per row of 16 lanes. */
        __m512i idx = px_conv_lanes(cv, j0 + jr + 16 * half, n, rowOK, colOK);
        long r = k0;
        long c = r / (kk * kk), ki = (r / kk) % kk, kj = r % kk;
        for (long k = 0; k < kc; k++) {
          __mmask16 ok = rowOK[ki] & colOK[kj] & px_lanes(0, n);
          const float *src = x + c * hw + ki * w + kj;
          _mm512_storeu_ps(dh + k * PX_NR, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, idx, src, 4));
          if (++kj == kk) {
            kj = 0;
            if (++ki == kk) { ki = 0; c++; }
          }
        }
        continue;
      }
      int lane[17];
      long base[16];
      int runs = px_same_runs(cv, j0 + jr + 16 * half, n, lane, base, rowOK, colOK);
      /* Per tap, the lanes of each run that read inside the plane: one masked load per run. */
      __mmask16 m[2][PX_CONV_KMAX * PX_CONV_KMAX];
      if (runs <= 2) {
        for (long ki = 0; ki < kk; ki++)
          for (long kj = 0; kj < kk; kj++) {
            __mmask16 ok = rowOK[ki] & colOK[kj];
            m[0][ki * kk + kj] = ok & px_lanes(0, lane[1]);
            m[1][ki * kk + kj] = runs == 2 ? ok & px_lanes(lane[1], lane[2]) : 0;
          }
        const float *x0 = x + base[0], *x1 = x + (runs == 2 ? base[1] : base[0]);
        if (runs == 1)
          for (long k = 0; k < kc; k++)
            _mm512_storeu_ps(dh + k * PX_NR, _mm512_maskz_loadu_ps(m[0][tap[k]], x0 + off[k]));
        else
          for (long k = 0; k < kc; k++)
            _mm512_storeu_ps(dh + k * PX_NR,
                             _mm512_mask_loadu_ps(_mm512_maskz_loadu_ps(m[0][tap[k]], x0 + off[k]),
                                                  m[1][tap[k]], x1 + off[k]));
        continue;
      }
      /* Planes smaller than 16 positions: several samples per half. */
      for (long k = 0; k < kc; k++) {
        __mmask16 ok = rowOK[tap[k] / kk] & colOK[tap[k] % kk];
        _mm512_storeu_ps(dh + k * PX_NR, px_load_same_runs(x + off[k], ok, lane, base, runs));
      }
    }
  }
}

/* Packs rows k0 ..< k0+kc (kc ≤ PX_KC), columns j0 ..< j0+nc of the implicit B as px_pack_b
 * does. */
__attribute__((target("avx512f"))) static inline void px_pack_b_conv(
    float *dst, const float *x, const px_conv *cv, long k0, long kc, long j0, long nc) {
  long off[PX_KC];
  unsigned char tap[PX_KC];
  if (px_conv_same(cv)) px_conv_rows(cv, k0, kc, off, tap);
  px_pack_b_conv_strips(dst, x, cv, off, tap, k0, kc, j0, nc);
}

/* The transposed implicit im2col, for a convolution's weight gradient dW = dY · colᵀ:
 * op(B)[K = S·ho·wo, N = C·k·k] with op(B)[s·ho·wo + i·wo + j, (c·k + ki)·k + kj]
 * = x[s, c, i·st + ki − pad, j·st + kj − pad] (zero outside the plane). Packs rows k0 ..< k0+kc,
 * columns j0 ..< j0+nc as px_pack_b does: 16 positions × 16 columns at a time, each column a
 * shifted (masked) run of x, transposed in registers. */
__attribute__((target("avx512f"))) static inline void px_pack_b_conv_t(
    float *dst, const float *x, const px_conv *cv, long k0, long kc, long j0, long nc) {
  long hw = cv->h * cv->w, w = cv->w, kk = cv->k, pad = cv->pad;
  int same = px_conv_same(cv);
  for (long k = 0; k < kc; k += 16) {
    long n = kc - k < 16 ? kc - k : 16;
    /* Per lane (position): validity of each kernel row/column, and where it reads x: runs
     * within one sample ("same") or gather offsets (strided or not "same"). */
    int lane[17], runs = 0;
    long base[16];
    __mmask16 rowOK[PX_CONV_KMAX], colOK[PX_CONV_KMAX];
    __m512i idx = _mm512_setzero_si512();
    if (same) runs = px_same_runs(cv, k0 + k, n, lane, base, rowOK, colOK);
    else idx = px_conv_lanes(cv, k0 + k, n, rowOK, colOK);
    for (long jr = 0; jr < nc; jr += PX_NR) {
      float *d = dst + jr * kc + k * PX_NR;
      for (long half = 0; half < 2; half++) {
        long j = jr + 16 * half;
        long cols = nc - j < 16 ? nc - j : 16;
        __m512 r[16];
        long col = j0 + j;
        long c = col / (kk * kk), ki = (col / kk) % kk, kj = col % kk;
        for (long i = 0; i < 16; i++) {
          if (i >= cols) { r[i] = _mm512_setzero_ps(); continue; }
          __mmask16 ok = rowOK[ki] & colOK[kj] & px_lanes(0, n);
          if (same) {
            r[i] = px_load_same_runs(x + c * hw + (ki - pad) * w + (kj - pad), ok, lane, base, runs);
          } else {
            r[i] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ok, idx, x + c * hw + ki * w + kj, 4);
          }
          if (++kj == kk) {
            kj = 0;
            if (++ki == kk) { ki = 0; c++; }
          }
        }
        px_store_t16x16(d + 16 * half, PX_NR, r, n);
      }
    }
  }
}

/* Where a micro-tile's 32 columns go: each 16-column half is one run at c + off (`run`
 * set) or scattered to c + idx[lane]. */
typedef struct { int run0, run1; long off0, off1; __m512i idx0, idx1; } px_tile_cols;

/* C[mr×nr] (row stride ldc) = alpha · acc + beta · C (+ bias[r] on row r when bias is not NULL),
 * acc[2r], acc[2r + 1] holding row r's columns 0…15 and 16…31; columns at c + 0…31, or per
 * `cols` when not NULL. The micro-kernels' common tail. */
__attribute__((target("avx512f,fma"))) static inline void px_store_tile(
    const __m512 *acc, float *c, long ldc, float alpha, float beta, long mr, long nr,
    const float *bias, const px_tile_cols *cols) {
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
  px_tile_cols plain = {1, 1, 0, 16, _mm512_setzero_si512(), _mm512_setzero_si512()};
  const px_tile_cols *L = cols ? cols : &plain;
  for (long r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m512 v0 = _mm512_mul_ps(va, acc[2 * r]), v1 = _mm512_mul_ps(va, acc[2 * r + 1]);
    if (beta != 0) {
      __m512 o0 = L->run0 ? _mm512_maskz_loadu_ps(m0, cr + L->off0)
                          : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, L->idx0, cr, 4);
      __m512 o1 = m1 == 0 ? _mm512_setzero_ps()
                  : L->run1 ? _mm512_maskz_loadu_ps(m1, cr + L->off1)
                            : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, L->idx1, cr, 4);
      v0 = _mm512_fmadd_ps(vb, o0, v0);
      v1 = _mm512_fmadd_ps(vb, o1, v1);
    }
    if (bias) {
      __m512 br = _mm512_set1_ps(bias[r]);
      v0 = _mm512_add_ps(v0, br);
      v1 = _mm512_add_ps(v1, br);
    }
    if (L->run0) _mm512_mask_storeu_ps(cr + L->off0, m0, v0);
    else _mm512_mask_i32scatter_ps(cr, m0, L->idx0, v0, 4);
    if (m1 == 0) continue;
    if (L->run1) _mm512_mask_storeu_ps(cr + L->off1, m1, v1);
    else _mm512_mask_i32scatter_ps(cr, m1, L->idx1, v1, 4);
  }
}

/* The columns jg ..< jg + nr (nr ≤ 32) of layout ccols (blocked) as a micro-tile's
 * px_tile_cols: column offsets without a division per column. */
__attribute__((target("avx512f"))) static inline void px_make_tile_cols(px_tile_cols *tc,
                                                                       px_cols ccols, long jg,
                                                                       long nr) {
  int off[32];
  long o = px_coff(ccols, jg), q = (jg % ccols.blk);
  for (long j = 0; j < 32; j++) {
    off[j] = (int)o;
    if (++q == ccols.blk) { q = 0; o += ccols.bst - ccols.blk + 1; } else o++;
  }
  long n0 = nr < 16 ? nr : 16;
  tc->run0 = off[n0 - 1] - off[0] == n0 - 1;
  tc->run1 = nr <= 16 || off[nr - 1] - off[16] == nr - 17;
  tc->off0 = off[0];
  tc->off1 = off[16];
  tc->idx0 = _mm512_loadu_si512(off);
  tc->idx1 = _mm512_loadu_si512(off + 16);
}

#endif
