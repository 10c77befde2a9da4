/* Memory-bound kernels for x86-64 with AVX-512F (BatchNorm, residual tail, im2col/col2im,
 * max pooling): the fast paths dispatch.c picks at run time. portable.c holds their twins
 * and tests compare the two. */
#include "internal.h"

#if PX_HAVE_AVX512
#include <immintrin.h>

static inline __mmask16 px_tail_mask(long n) { return (__mmask16)((1u << n) - 1); }
/* Lanes 0 ..< n for 0 ≤ n ≤ 16. */
static inline __mmask16 px_tail_mask16(long n) { return (__mmask16)((1u << n) - 1); }

/* *sum += Σx, *sumsq += Σx² over n floats (Float lanes, Double result). */
__attribute__((target("avx512f,fma"))) void px_avx512_sum(const float *x, long n,
                                                          double *sum) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
  long i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
  }
  for (; i < n; i += 16)
    s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(px_tail_mask(n - i < 16 ? n - i : 16), x + i));
  *sum += (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx512f,fma"))) void px_avx512_sum_sumsq(
    const float *x, long n, double *sum, double *sumsq) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps();
  long i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
    q0 = _mm512_fmadd_ps(a, a, q0);
    q1 = _mm512_fmadd_ps(b, b, q1);
  }
  for (; i < n; i += 16) {
    __m512 a = _mm512_maskz_loadu_ps(px_tail_mask(n - i < 16 ? n - i : 16), x + i);
    s0 = _mm512_add_ps(s0, a);
    q0 = _mm512_fmadd_ps(a, a, q0);
  }
  *sum += (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  *sumsq += (double)_mm512_reduce_add_ps(_mm512_add_ps(q0, q1));
}

/* *sum += Σdy, *dot += Σdy·xh over n floats. */
__attribute__((target("avx512f,fma"))) void px_avx512_sum_dot(
    const float *dy, const float *xh, long n, double *sum, double *dot) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
  long i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = _mm512_loadu_ps(dy + i), b = _mm512_loadu_ps(dy + i + 16);
    s0 = _mm512_add_ps(s0, a);
    s1 = _mm512_add_ps(s1, b);
    d0 = _mm512_fmadd_ps(a, _mm512_loadu_ps(xh + i), d0);
    d1 = _mm512_fmadd_ps(b, _mm512_loadu_ps(xh + i + 16), d1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = px_tail_mask(n - i < 16 ? n - i : 16);
    __m512 a = _mm512_maskz_loadu_ps(m, dy + i);
    s0 = _mm512_add_ps(s0, a);
    d0 = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, xh + i), d0);
  }
  *sum += (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  *dot += (double)_mm512_reduce_add_ps(_mm512_add_ps(d0, d1));
}

/* xh = (x − mu)·r, y = g·xh + b over n floats. */
__attribute__((target("avx512f,fma"))) void px_avx512_bn_forward(
    float *y, float *xh, const float *x, long n, float mu, float r, float g, float b) {
  __m512 vm = _mm512_set1_ps(mu), vr = _mm512_set1_ps(r), vg = _mm512_set1_ps(g),
         vb = _mm512_set1_ps(b);
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
    _mm512_mask_storeu_ps(xh + i, m, h);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(vg, h, vb));
  }
}

/* dx = k·(dy − mdy − xh·mdx) over n floats. */
__attribute__((target("avx512f,fma"))) void px_avx512_bn_backward(
    float *dx, const float *dy, const float *xh, long n, float k, float mdy, float mdx) {
  __m512 vk = _mm512_set1_ps(k), vm = _mm512_set1_ps(mdy), vx = _mm512_set1_ps(mdx);
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + i), vm);
    d = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, xh + i), vx, d);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vk, d));
  }
}

/* BatchNorm followed by ReLU (one pass): xh = (x − mu)·r, y = max(g·xh + b, 0). */
__attribute__((target("avx512f,fma"))) void px_avx512_bn_relu_forward(
    float *y, float *xh, const float *x, long n, float mu, float r, float g, float b) {
  __m512 vm = _mm512_set1_ps(mu), vr = _mm512_set1_ps(r), vg = _mm512_set1_ps(g),
         vb = _mm512_set1_ps(b), z = _mm512_setzero_ps();
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
    _mm512_mask_storeu_ps(xh + i, m, h);
    _mm512_mask_storeu_ps(y + i, m, _mm512_max_ps(_mm512_fmadd_ps(vg, h, vb), z));
  }
}

/* The ReLU mask of px_bn_relu_forward's output, recomputed from xh: g·xh + b > 0. */
__attribute__((target("avx512f,fma"))) static inline __mmask16 px_relu_mask(
    __mmask16 m, __m512 h, __m512 vg, __m512 vb) {
  return _mm512_mask_cmp_ps_mask(m, _mm512_fmadd_ps(vg, h, vb), _mm512_setzero_ps(), _CMP_GT_OQ);
}

/* As px_sum_dot on dy masked by the ReLU (dy where g·xh + b > 0, else 0). */
__attribute__((target("avx512f,fma"))) void px_avx512_sum_dot_relu(
    const float *dy, const float *xh, long n, float g, float b, double *sum, double *dot) {
  __m512 vg = _mm512_set1_ps(g), vb = _mm512_set1_ps(b);
  __m512 s0 = _mm512_setzero_ps(), d0 = _mm512_setzero_ps();
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 h = _mm512_maskz_loadu_ps(m, xh + i);
    __m512 a = _mm512_maskz_loadu_ps(px_relu_mask(m, h, vg, vb), dy + i);
    s0 = _mm512_add_ps(s0, a);
    d0 = _mm512_fmadd_ps(a, h, d0);
  }
  *sum += (double)_mm512_reduce_add_ps(s0);
  *dot += (double)_mm512_reduce_add_ps(d0);
}

/* As px_bn_backward on dy masked by the ReLU. */
__attribute__((target("avx512f,fma"))) void px_avx512_bn_relu_backward(
    float *dx, const float *dy, const float *xh, long n, float k, float mdy, float mdx, float g,
    float b) {
  __m512 vk = _mm512_set1_ps(k), vm = _mm512_set1_ps(mdy), vx = _mm512_set1_ps(mdx),
         vg = _mm512_set1_ps(g), vb = _mm512_set1_ps(b);
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 h = _mm512_maskz_loadu_ps(m, xh + i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(px_relu_mask(m, h, vg, vb), dy + i), vm);
    d = _mm512_fnmadd_ps(h, vx, d);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vk, d));
  }
}

/* A residual block's tail: y = a + b where that is > 0 or NaN, else 0 (Swift's max(a + b, 0)). */
__attribute__((target("avx512f"))) void px_avx512_add_relu(
    float *y, const float *a, const float *b, long n) {
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLE_UQ);
    _mm512_mask_storeu_ps(y + i, m, _mm512_maskz_mov_ps(keep, v));
  }
}

/* Its backward through the ReLU: g = dy where y > 0, else 0. */
__attribute__((target("avx512f"))) void px_avx512_relu_backward(
    float *g, const float *y, const float *dy, long n) {
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __mmask16 on = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, y + i), _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_mask_storeu_ps(g + i, m, _mm512_maskz_loadu_ps(on, dy + i));
  }
}

/* im2col for stride 1 (channels c0 ..< c1 of C): `samples` planes-sets src [S, C, h, w] into dst [C·k·k, S·ho·wo]
 * (row (c·k + ki)·k + kj, column s·ho·wo + i·wo + j), zero padding `pad`. */
__attribute__((target("avx512f"))) void px_avx512_im2col_s1(
    float *dst, const float *src, long samples, long C, long h, long w, long k, long pad, long ho,
    long wo, long c0, long c1) {
  long cols = samples * ho * wo;
  for (long c = c0; c < c1; c++)
    for (long ki = 0; ki < k; ki++)
      for (long kj = 0; kj < k; kj++) {
        float *row = dst + ((c * k + ki) * k + kj) * cols;
        long jLo = pad - kj > 0 ? pad - kj : 0;
        long jHi = w + pad - kj < wo ? w + pad - kj : wo;
        if (jHi < jLo) jHi = jLo;
        for (long s = 0; s < samples; s++) {
          const float *plane = src + (s * C + c) * h * w;
          for (long i = 0; i < ho; i++) {
            float *r = row + (s * ho + i) * wo;
            long y = i - pad + ki;
            const float *line = plane + y * w - pad + kj;
            int inside = y >= 0 && y < h;
            for (long j = 0; j < wo; j += 16) {
              long n = wo - j < 16 ? wo - j : 16;
              __mmask16 all = px_tail_mask16(n);
              long lo = jLo > j ? jLo - j : 0, hi = jHi - j < n ? jHi - j : n;
              __mmask16 valid = inside && hi > lo ? (__mmask16)(px_tail_mask16(hi) & ~px_tail_mask16(lo)) : 0;
              _mm512_mask_storeu_ps(r + j, all, _mm512_maskz_loadu_ps(valid, line + j));
            }
          }
        }
      }
}

/* The adjoint of px_im2col_s1: adds the columns of src [C·k·k, S·ho·wo] into dst [S, C, h, w]. */
__attribute__((target("avx512f"))) void px_avx512_col2im_s1(
    float *dst, const float *src, long samples, long C, long h, long w, long k, long pad, long ho,
    long wo, long c0, long c1) {
  long cols = samples * ho * wo;
  for (long c = c0; c < c1; c++)
    for (long ki = 0; ki < k; ki++)
      for (long kj = 0; kj < k; kj++) {
        const float *row = src + ((c * k + ki) * k + kj) * cols;
        long jLo = pad - kj > 0 ? pad - kj : 0;
        long jHi = w + pad - kj < wo ? w + pad - kj : wo;
        if (jHi <= jLo) continue;
        for (long s = 0; s < samples; s++) {
          float *plane = dst + (s * C + c) * h * w;
          for (long i = 0; i < ho; i++) {
            long y = i - pad + ki;
            if (y < 0 || y >= h) continue;
            const float *r = row + (s * ho + i) * wo;
            float *line = plane + y * w - pad + kj;
            for (long j = jLo; j < jHi; j += 16) {
              __mmask16 m = px_tail_mask16(jHi - j < 16 ? jHi - j : 16);
              _mm512_mask_storeu_ps(line + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, line + j),
                                                               _mm512_maskz_loadu_ps(m, r + j)));
            }
          }
        }
      }
}

/* im2col for stride 2 (channels c0 ..< c1 of C), as px_im2col_s1: out column j of a row reads
 * input column 2j − pad + kj; sixteen outputs per step from 32 raw inputs, evens picked by a
 * permute. */
__attribute__((target("avx512f"))) void px_avx512_im2col_s2(
    float *dst, const float *src, long samples, long C, long h, long w, long k, long pad, long ho,
    long wo, long c0, long c1) {
  long cols = samples * ho * wo;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  for (long c = c0; c < c1; c++)
    for (long ki = 0; ki < k; ki++)
      for (long kj = 0; kj < k; kj++) {
        float *row = dst + ((c * k + ki) * k + kj) * cols;
        /* Valid outputs: 0 ≤ 2j − pad + kj < w. */
        long jLo = pad - kj > 0 ? (pad - kj + 1) / 2 : 0;
        long jHi = w + pad - kj > 0 ? (w + pad - kj + 1) / 2 : 0;
        if (jHi > wo) jHi = wo;
        if (jHi < jLo) jHi = jLo;
        for (long s = 0; s < samples; s++) {
          const float *plane = src + (s * C + c) * h * w;
          for (long i = 0; i < ho; i++) {
            float *r = row + (s * ho + i) * wo;
            long y = 2 * i - pad + ki;
            const float *line = plane + y * w - pad + kj;
            int inside = y >= 0 && y < h;
            for (long j = 0; j < wo; j += 16) {
              long n = wo - j < 16 ? wo - j : 16;
              long lo = jLo > j ? jLo - j : 0, hi = jHi - j < n ? jHi - j : n;
              __m512 v = _mm512_setzero_ps();
              if (inside && hi > lo) {
                /* Raw inputs 2·lo ..< 2·hi − 1 relative to line + 2j (all inside the line). */
                long r0 = 2 * lo, r1 = 2 * hi - 1;
                __mmask16 m0 = (__mmask16)(px_tail_mask16(r1 < 16 ? r1 : 16) & ~px_tail_mask16(r0 < 16 ? r0 : 16));
                __mmask16 m1 = (__mmask16)(px_tail_mask16(r1 > 16 ? r1 - 16 : 0) & ~px_tail_mask16(r0 > 16 ? r0 - 16 : 0));
                __m512 a = _mm512_maskz_loadu_ps(m0, line + 2 * j);
                __m512 b = _mm512_maskz_loadu_ps(m1, line + 2 * j + 16);
                v = _mm512_maskz_permutex2var_ps((__mmask16)(px_tail_mask16(hi) & ~px_tail_mask16(lo)), a, even, b);
              }
              _mm512_mask_storeu_ps(r + j, px_tail_mask16(n), v);
            }
          }
        }
      }
}

/* The adjoint of px_im2col_s2: adds the columns of src [C·k·k, S·ho·wo] into dst [S, C, h, w]. */
__attribute__((target("avx512f"))) void px_avx512_col2im_s2(
    float *dst, const float *src, long samples, long C, long h, long w, long k, long pad, long ho,
    long wo, long c0, long c1) {
  long cols = samples * ho * wo;
  /* Output j of a 16-step goes to raw lane 2j: spread 8 values per 16-lane half. */
  const __m512i spreadLo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i spreadHi = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
  for (long c = c0; c < c1; c++)
    for (long ki = 0; ki < k; ki++)
      for (long kj = 0; kj < k; kj++) {
        const float *row = src + ((c * k + ki) * k + kj) * cols;
        long jLo = pad - kj > 0 ? (pad - kj + 1) / 2 : 0;
        long jHi = w + pad - kj > 0 ? (w + pad - kj + 1) / 2 : 0;
        if (jHi > wo) jHi = wo;
        if (jHi <= jLo) continue;
        for (long s = 0; s < samples; s++) {
          float *plane = dst + (s * C + c) * h * w;
          for (long i = 0; i < ho; i++) {
            long y = 2 * i - pad + ki;
            if (y < 0 || y >= h) continue;
            const float *r = row + (s * ho + i) * wo;
            float *line = plane + y * w - pad + kj;
            for (long j = jLo; j < jHi; j += 16) {
              long n = jHi - j < 16 ? jHi - j : 16;
              __m512 v = _mm512_maskz_loadu_ps(px_tail_mask16(n), r + j);
              /* Even raw lanes 2t for t < n: halves hold t < 8 and 8 ≤ t < 16. */
              __mmask16 e0 = (__mmask16)(0x5555 & px_tail_mask16(2 * n < 16 ? 2 * n : 16));
              __mmask16 e1 = (__mmask16)(0x5555 & px_tail_mask16(2 * n > 16 ? 2 * n - 16 : 0));
              float *l0 = line + 2 * j;
              _mm512_mask_storeu_ps(l0, e0, _mm512_add_ps(_mm512_maskz_loadu_ps(e0, l0),
                                                          _mm512_permutexvar_ps(spreadLo, v)));
              if (e1)
                _mm512_mask_storeu_ps(l0 + 16, e1, _mm512_add_ps(_mm512_maskz_loadu_ps(e1, l0 + 16),
                                                                 _mm512_permutexvar_ps(spreadHi, v)));
            }
          }
        }
      }
}

/* 2×2 stride-2 max pooling of one [h, w] plane into y [h/2, w/2] with idx, the index in the
 * plane of each window's maximum: first in scan order on ties, NaN wins (as PyTorch).
 * Sixteen windows of one output row per step (w/2 ≤ 16 per step, longer rows loop). */
__attribute__((target("avx512f"))) void px_avx512_maxpool2_plane(
    float *y, int *idx, const float *x, long h, long w) {
  long ho = h / 2, wo = w / 2;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i twoj = _mm512_add_epi32(even, _mm512_setzero_si512());
  for (long i = 0; i < ho; i++) {
    const float *r0 = x + 2 * i * w, *r1 = r0 + w;
    for (long j = 0; j < wo; j += 16) {
      long n = wo - j < 16 ? wo - j : 16;
      __mmask16 m = px_tail_mask16(n);
      /* 2n inputs per row from column 2j. */
      __mmask16 lo = px_tail_mask16(2 * n < 16 ? 2 * n : 16);
      __mmask16 hi = px_tail_mask16(2 * n > 16 ? 2 * n - 16 : 0);
      __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j), a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16);
      __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j), b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16);
      __m512 a = _mm512_permutex2var_ps(a0, even, a1), b = _mm512_permutex2var_ps(a0, odd, a1);
      __m512 c = _mm512_permutex2var_ps(b0, even, b1), d = _mm512_permutex2var_ps(b0, odd, b1);
      __m512 best = a;
      __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * i * w + 2 * j)), twoj);
      __m512i at = base;
#define PX_POOL_STEP(v, delta)                                                              \
  {                                                                                       \
    __mmask16 ok = _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);                            \
    __mmask16 take = ok & (_mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |                      \
                           _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));                       \
    best = _mm512_mask_blend_ps(take, best, v);                                           \
    at = _mm512_mask_blend_epi32(take, at, _mm512_add_epi32(base, _mm512_set1_epi32(delta))); \
  }
      PX_POOL_STEP(b, 1)
      PX_POOL_STEP(c, (int)w)
      PX_POOL_STEP(d, (int)w + 1)
#undef PX_POOL_STEP
      _mm512_mask_storeu_ps(y + i * wo + j, m, best);
      _mm512_mask_storeu_epi32(idx + i * wo + j, m, at);
    }
  }
}

/* The backward of px_maxpool2_plane: dx [h, w] gets each window's gradient at its argmax and
 * zero elsewhere (including a last row/column outside every window). */
__attribute__((target("avx512f"))) void px_avx512_maxpool2_plane_backward(
    float *dx, const int *idx, const float *dy, long h, long w) {
  long ho = h / 2, wo = w / 2;
  const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const __m512i twoj = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  for (long i = 0; i < ho; i++) {
    float *r0 = dx + 2 * i * w, *r1 = r0 + w;
    for (long j = 0; j < wo; j += 16) {
      long n = wo - j < 16 ? wo - j : 16;
      __mmask16 m = px_tail_mask16(n);
      __mmask16 lo = px_tail_mask16(2 * n < 16 ? 2 * n : 16);
      __mmask16 hi = px_tail_mask16(2 * n > 16 ? 2 * n - 16 : 0);
      __m512 g = _mm512_maskz_loadu_ps(m, dy + i * wo + j);
      __m512i at = _mm512_maskz_loadu_epi32(m, idx + i * wo + j);
      __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * i * w + 2 * j)), twoj);
      __m512 a = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, base), g);
      __m512 b = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(base, _mm512_set1_epi32(1))), g);
      __m512 c = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(base, _mm512_set1_epi32((int)w))), g);
      __m512 d = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(at, _mm512_add_epi32(base, _mm512_set1_epi32((int)w + 1))), g);
      _mm512_mask_storeu_ps(r0 + 2 * j, lo, _mm512_permutex2var_ps(a, lo_idx, b));
      _mm512_mask_storeu_ps(r0 + 2 * j + 16, hi, _mm512_permutex2var_ps(a, hi_idx, b));
      _mm512_mask_storeu_ps(r1 + 2 * j, lo, _mm512_permutex2var_ps(c, lo_idx, d));
      _mm512_mask_storeu_ps(r1 + 2 * j + 16, hi, _mm512_permutex2var_ps(c, hi_idx, d));
    }
    if (w > 2 * wo) {
      r0[w - 1] = 0;
      r1[w - 1] = 0;
    }
  }
  if (h > 2 * ho)
    for (long j = 0; j < w; j++) dx[(h - 1) * w + j] = 0;
}


/* ---- BatchNorm + ReLU + 2×2 max pooling --------------------------------------------------- */

/* max(g·(x − mu)·r + b, 0), the operations of px_avx512_bn_relu_forward. */
__attribute__((target("avx512f,fma"))) static inline __m512 px_bn_relu_v(__m512 x, __m512 vm,
                                                                         __m512 vr, __m512 vg,
                                                                         __m512 vb) {
  __m512 h = _mm512_mul_ps(_mm512_sub_ps(x, vm), vr);
  return _mm512_max_ps(_mm512_fmadd_ps(vg, h, vb), _mm512_setzero_ps());
}

/* px_avx512_maxpool2_plane on the BN-ReLU values (never NaN, so no NaN cases). */
__attribute__((target("avx512f,fma"))) void px_avx512_bn_relu_pool2_forward(
    float *y, int *idx, const float *x, long h, long w, float mu, float r, float g, float b) {
  long ho = h / 2, wo = w / 2;
  const __m512 vm = _mm512_set1_ps(mu), vr = _mm512_set1_ps(r), vg = _mm512_set1_ps(g),
               vb = _mm512_set1_ps(b);
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (long i = 0; i < ho; i++) {
    const float *r0 = x + 2 * i * w, *r1 = r0 + w;
    for (long j = 0; j < wo; j += 16) {
      long n = wo - j < 16 ? wo - j : 16;
      __mmask16 m = px_tail_mask16(n);
      __mmask16 lo = px_tail_mask16(2 * n < 16 ? 2 * n : 16);
      __mmask16 hi = px_tail_mask16(2 * n > 16 ? 2 * n - 16 : 0);
      __m512 a0 = px_bn_relu_v(_mm512_maskz_loadu_ps(lo, r0 + 2 * j), vm, vr, vg, vb);
      __m512 a1 = px_bn_relu_v(_mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16), vm, vr, vg, vb);
      __m512 b0 = px_bn_relu_v(_mm512_maskz_loadu_ps(lo, r1 + 2 * j), vm, vr, vg, vb);
      __m512 b1 = px_bn_relu_v(_mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16), vm, vr, vg, vb);
      __m512 a = _mm512_permutex2var_ps(a0, even, a1), bb = _mm512_permutex2var_ps(a0, odd, a1);
      __m512 c = _mm512_permutex2var_ps(b0, even, b1), d = _mm512_permutex2var_ps(b0, odd, b1);
      __m512 best = a;
      __m512i base = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * i * w + 2 * j)), even);
      __m512i at = base;
#define PX_POOL_STEP(v, delta)                                                                  \
  {                                                                                             \
    __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);                                   \
    best = _mm512_mask_blend_ps(take, best, v);                                                 \
    at = _mm512_mask_blend_epi32(take, at, _mm512_add_epi32(base, _mm512_set1_epi32(delta)));   \
  }
      PX_POOL_STEP(bb, 1)
      PX_POOL_STEP(c, (int)w)
      PX_POOL_STEP(d, (int)w + 1)
#undef PX_POOL_STEP
      _mm512_mask_storeu_ps(y + i * wo + j, m, best);
      _mm512_mask_storeu_epi32(idx + i * wo + j, m, at);
    }
  }
}

/* The pooled gradient routed to rows 2i and 2i + 1, columns c0 … c0 + 31 (c0 even): dy [ho, wo]
 * of each position's window where idx names the position, zero elsewhere and outside every
 * window. g[2r + q]: row 2i + r, columns c0 + 16q … c0 + 16q + 15. One load of the 16 windows'
 * dy and argmax serves both rows. */
__attribute__((target("avx512f"))) static inline void px_pool2_route(__m512 *g, const float *dy,
                                                                     const int *idx, long i,
                                                                     long c0, long w, long wo) {
  long j0 = c0 / 2;
  if (j0 >= wo) {
    g[0] = g[1] = g[2] = g[3] = _mm512_setzero_ps();
    return;
  }
  long n = wo - j0 < 16 ? wo - j0 : 16;
  __mmask16 m = px_tail_mask16(n);
  const __m512i lo = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512 v = _mm512_maskz_loadu_ps(m, dy + i * wo + j0);
  __m512i a = _mm512_maskz_loadu_epi32(m, idx + i * wo + j0);
  __m512 v0 = _mm512_permutexvar_ps(lo, v), v1 = _mm512_permutexvar_ps(hi, v);
  __m512i a0 = _mm512_permutexvar_epi32(lo, a), a1 = _mm512_permutexvar_epi32(hi, a);
  __m512i p0 = _mm512_add_epi32(_mm512_set1_epi32((int)(2 * i * w + c0)), lane);
  __m512i p1 = _mm512_add_epi32(p0, _mm512_set1_epi32(16));
  __m512i dw = _mm512_set1_epi32((int)w);
  __mmask16 m0 = px_tail_mask16(2 * n < 16 ? 2 * n : 16), m1 = px_tail_mask16(2 * n > 16 ? 2 * n - 16 : 0);
  g[0] = _mm512_maskz_mov_ps(_mm512_mask_cmpeq_epi32_mask(m0, a0, p0), v0);
  g[1] = _mm512_maskz_mov_ps(_mm512_mask_cmpeq_epi32_mask(m1, a1, p1), v1);
  g[2] = _mm512_maskz_mov_ps(_mm512_mask_cmpeq_epi32_mask(m0, a0, _mm512_add_epi32(p0, dw)), v0);
  g[3] = _mm512_maskz_mov_ps(_mm512_mask_cmpeq_epi32_mask(m1, a1, _mm512_add_epi32(p1, dw)), v1);
}

/* Lanes of columns c ..< c + 16 inside a row of w. */
static inline __mmask16 px_row_lanes(long c, long w) {
  return c >= w ? 0 : px_tail_mask16(w - c < 16 ? w - c : 16);
}

/* Rows ≥ 2·ho (odd h) lie in no window: their routed gradient is zero, so they add nothing. */
__attribute__((target("avx512f,fma"))) void px_avx512_sum_dot_relu_pool2(
    const float *dy, const int *idx, const float *x, long h, long w, float mu, float r, float g,
    float b, double *sum, double *dot) {
  long ho = h / 2, wo = w / 2;
  const __m512 vm = _mm512_set1_ps(mu), vr = _mm512_set1_ps(r), vg = _mm512_set1_ps(g),
               vb = _mm512_set1_ps(b);
  __m512 s[4], d[4];
  for (int q = 0; q < 4; q++) s[q] = d[q] = _mm512_setzero_ps();
  for (long i = 0; i < ho; i++)
    for (long c0 = 0; c0 < w; c0 += 32) {
      __m512 route[4];
      px_pool2_route(route, dy, idx, i, c0, w, wo);
      for (int q = 0; q < 4; q++) {
        long rr = 2 * i + q / 2, c = c0 + 16 * (q % 2);
        __mmask16 m = px_row_lanes(c, w);
        __m512 hx = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + rr * w + c), vm), vr);
        __m512 a = _mm512_maskz_mov_ps(px_relu_mask(m, hx, vg, vb), route[q]);
        s[q] = _mm512_add_ps(s[q], a);
        d[q] = _mm512_fmadd_ps(a, hx, d[q]);
      }
    }
  __m512 st = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
  __m512 dt = _mm512_add_ps(_mm512_add_ps(d[0], d[1]), _mm512_add_ps(d[2], d[3]));
  *sum += (double)_mm512_reduce_add_ps(st);
  *dot += (double)_mm512_reduce_add_ps(dt);
}

/* k·(a − mdy − x̂·mdx) with a the routed gradient where the ReLU passed, else 0. */
__attribute__((target("avx512f,fma"))) static inline void px_bn_pool2_dx(
    float *dx, const float *x, __mmask16 m, __m512 route, __m512 vm, __m512 vr, __m512 vg,
    __m512 vb, __m512 vk, __m512 vmdy, __m512 vmdx) {
  __m512 hx = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x), vm), vr);
  __m512 a = _mm512_maskz_mov_ps(px_relu_mask(m, hx, vg, vb), route);
  __m512 d = _mm512_fnmadd_ps(hx, vmdx, _mm512_sub_ps(a, vmdy));
  _mm512_mask_storeu_ps(dx, m, _mm512_mul_ps(vk, d));
}

__attribute__((target("avx512f,fma"))) void px_avx512_bn_relu_pool2_backward(
    float *dx, const float *dy, const int *idx, const float *x, long h, long w, float mu,
    float r, float k, float mdy, float mdx, float g, float b) {
  long ho = h / 2, wo = w / 2;
  const __m512 vm = _mm512_set1_ps(mu), vr = _mm512_set1_ps(r), vg = _mm512_set1_ps(g),
               vb = _mm512_set1_ps(b), vk = _mm512_set1_ps(k), vmdy = _mm512_set1_ps(mdy),
               vmdx = _mm512_set1_ps(mdx);
  for (long i = 0; i < ho; i++)
    for (long c0 = 0; c0 < w; c0 += 32) {
      __m512 route[4];
      px_pool2_route(route, dy, idx, i, c0, w, wo);
      for (int q = 0; q < 4; q++) {
        long o = (2 * i + q / 2) * w + c0 + 16 * (q % 2);
        px_bn_pool2_dx(dx + o, x + o, px_row_lanes(c0 + 16 * (q % 2), w), route[q], vm, vr, vg,
                       vb, vk, vmdy, vmdx);
      }
    }
  for (long rr = 2 * ho; rr < h; rr++)
    for (long c = 0; c < w; c += 16)
      px_bn_pool2_dx(dx + rr * w + c, x + rr * w + c, px_row_lanes(c, w), _mm512_setzero_ps(), vm,
                     vr, vg, vb, vk, vmdy, vmdx);
}

/* ---- 3×3 same convolution, one plane ------------------------------------------------------ */

/* Lanes l of a 16-column chunk at j0 (n valid) whose input column j0 + l + kj − 1 is inside
 * 0 ..< w. */
static inline __mmask16 px_conv3_cols(long j0, long n, long kj, long w) {
  long lo = 1 - kj - j0, hi = w - j0 - kj + 1;
  if (lo < 0) lo = 0;
  if (hi > n) hi = n;
  if (hi <= lo) return 0;
  return (__mmask16)(px_tail_mask16(hi) & ~px_tail_mask16(lo));
}

/* px_bf16_round on 16 lanes: ±0 for zero and denormal inputs, quiet NaN, else nearest even. */
__attribute__((target("avx512f"))) static inline __m512 px_bf16_round_ps(__m512 v) {
  __m512i b = _mm512_castps_si512(v);
  __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF));
  __mmask16 nan = _mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(0x7F800000));
  __mmask16 tiny = _mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(0x00800000));
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(b, _mm512_set1_epi32(0x00400000)));
  r = _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(b, _mm512_set1_epi32((int)0x80000000u)));
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* Four output rows at a time, so four independent multiply-add chains run and each loaded
 * input row serves every output row it touches; each output still sums its taps in the
 * (c, ki, kj) order of the portable loop. */
__attribute__((target("avx512f,fma"))) void px_avx512_conv3_plane(
    float *y, const float *x, long C, long h, long w, const float *wt, float bias) {
  const __m512 vb = _mm512_set1_ps(bias);
  for (long i0 = 0; i0 < h; i0 += 4) {
    long nb = h - i0 < 4 ? h - i0 : 4;
    for (long j0 = 0; j0 < w; j0 += 16) {
      long n = w - j0 < 16 ? w - j0 : 16;
      __mmask16 m0 = px_conv3_cols(j0, n, 0, w), m1 = px_conv3_cols(j0, n, 1, w),
                m2 = px_conv3_cols(j0, n, 2, w);
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps()};
      for (long c = 0; c < C; c++)
        for (long r = i0 - 1; r <= i0 + nb; r++) {
          if (r < 0 || r >= h) continue;
          /* Lanes outside the plane are masked: the load never touches them. */
          const float *row = x + (c * h + r) * w + j0 - 1;
          __m512 v0 = _mm512_maskz_loadu_ps(m0, row), v1 = _mm512_maskz_loadu_ps(m1, row + 1),
                 v2 = _mm512_maskz_loadu_ps(m2, row + 2);
#define PX_CONV3_ROW(ii)                                                                      \
  if ((ii) < nb && r - (i0 + (ii)) + 1 >= 0 && r - (i0 + (ii)) + 1 <= 2) {                      \
    const float *t = wt + (c * 3 + r - (i0 + (ii)) + 1) * 3;                                  \
    acc[ii] = _mm512_fmadd_ps(_mm512_set1_ps(t[0]), v0, acc[ii]);                             \
    acc[ii] = _mm512_fmadd_ps(_mm512_set1_ps(t[1]), v1, acc[ii]);                             \
    acc[ii] = _mm512_fmadd_ps(_mm512_set1_ps(t[2]), v2, acc[ii]);                             \
  }
          PX_CONV3_ROW(0) PX_CONV3_ROW(1) PX_CONV3_ROW(2) PX_CONV3_ROW(3)
#undef PX_CONV3_ROW
        }
      for (long ii = 0; ii < nb; ii++)
        _mm512_mask_storeu_ps(y + (i0 + ii) * w + j0, px_tail_mask16(n),
                              _mm512_add_ps(acc[ii], vb));
    }
  }
}

__attribute__((target("avx512f,fma"))) void px_avx512_conv3_wgrad_plane(
    float *dw, const float *g, const float *x, long C, long h, long w, int round) {
  for (long c = 0; c < C; c++) {
    __m512 acc[9];
    for (int t = 0; t < 9; t++) acc[t] = _mm512_setzero_ps();
    for (long i = 0; i < h; i++)
      for (long j0 = 0; j0 < w; j0 += 16) {
        long n = w - j0 < 16 ? w - j0 : 16;
        __m512 gv = _mm512_maskz_loadu_ps(px_tail_mask16(n), g + i * w + j0);
        if (round) gv = px_bf16_round_ps(gv);
        __mmask16 m[3] = {px_conv3_cols(j0, n, 0, w), px_conv3_cols(j0, n, 1, w),
                          px_conv3_cols(j0, n, 2, w)};
        for (long ki = 0; ki < 3; ki++) {
          long r = i + ki - 1;
          if (r < 0 || r >= h) continue;
          const float *row = x + (c * h + r) * w + j0 - 1;
          for (long kj = 0; kj < 3; kj++)
            acc[ki * 3 + kj] =
                _mm512_fmadd_ps(gv, _mm512_maskz_loadu_ps(m[kj], row + kj), acc[ki * 3 + kj]);
        }
      }
    for (int t = 0; t < 9; t++) dw[c * 9 + t] += _mm512_reduce_add_ps(acc[t]);
  }
}

#endif
