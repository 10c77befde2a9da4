/* Memory-bound kernels for x86-64 with AVX-512F (BatchNorm). Same contract as
 * parallax_sgemm.h: callers check px_sgemm_available() first; Model keeps portable Swift
 * twins (the reference path) and tests compare the two. */
#ifndef PARALLAX_KERNELS_H
#define PARALLAX_KERNELS_H

#include <immintrin.h>

static inline __mmask16 px_tail_mask(long n) { return (__mmask16)((1u << n) - 1); }

/* *sum += Σx, *sumsq += Σx² over n floats (Float lanes, Double result). */
__attribute__((target("avx512f,fma"))) static inline void px_sum_sumsq(
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
__attribute__((target("avx512f,fma"))) static inline void px_sum_dot(
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
__attribute__((target("avx512f,fma"))) static inline void px_bn_forward(
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
__attribute__((target("avx512f,fma"))) static inline void px_bn_backward(
    float *dx, const float *dy, const float *xh, long n, float k, float mdy, float mdx) {
  __m512 vk = _mm512_set1_ps(k), vm = _mm512_set1_ps(mdy), vx = _mm512_set1_ps(mdx);
  for (long i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : px_tail_mask(n - i);
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + i), vm);
    d = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, xh + i), vx, d);
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(vk, d));
  }
}

#endif
