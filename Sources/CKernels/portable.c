/* The portable C twins of the AVX-512 kernels: plain loops with each kernel's contract (see
 * parallax_kernels.h), the only path on other architectures and in PX_PORTABLE builds, and
 * the reference the fast path is tested against. */
#include "internal.h"

#include <string.h>

/* ---- SGEMM -------------------------------------------------------------------------------- */

static long px_offset(px_cols L, long j) { return L.blk ? (j / L.blk) * L.bst + j % L.blk : j; }

/* Element (p, j) of the implicit im2col of cv over x (j a column of the layout, p a row), or
 * of its transpose when cv->transposed (then p is the position and j the (c, ki, kj) row). */
static float px_conv_b(const px_conv *cv, const float *x, long p, long j) {
  long row = cv->transposed ? j : p, col = cv->transposed ? p : j;
  long kk = cv->k, c = row / (kk * kk), ki = (row / kk) % kk, kj = row % kk;
  long howo = cv->ho * cv->wo, s = col / howo, q = col % howo;
  long y = (q / cv->wo) * cv->stride + ki - cv->pad, xx = (q % cv->wo) * cv->stride + kj - cv->pad;
  if (y < 0 || y >= cv->h || xx < 0 || xx >= cv->w) return 0;
  return x[((s * cv->C + c) * cv->h + y) * cv->w + xx];
}

void px_portable_sgemm_conv(int transA, int transB, long M, long N, long K, float alpha,
                            const float *A, long lda, px_cols acols, const float *B, long ldb,
                            px_cols bcols, const px_conv *bconv, float beta, float *C, long ldc,
                            px_cols ccols, long jorg, const float *bias, float *packA,
                            float *packB) {
  (void)packA;
  (void)packB;
  for (long i = 0; i < M; i++)
    for (long j = 0; j < N; j++) {
      long jj = jorg + j;
      float acc = 0;
      for (long p = 0; p < K; p++) {
        float a = transA ? A[p * lda + i] : A[i * lda + px_offset(acols, p)];
        float b = bconv    ? px_conv_b(bconv, B, p, jj)
                  : transB ? B[jj * ldb + p]
                           : B[p * ldb + px_offset(bcols, jj)];
        acc += a * b;
      }
      float *c = C + i * ldc + px_offset(ccols, jj);
      *c = alpha * acc + (beta == 0 ? 0 : beta * *c) + (bias ? bias[i] : 0);
    }
}

/* ---- bf16 GEMM ---------------------------------------------------------------------------- */

float px_bf16_round(float x) {
  unsigned u;
  memcpy(&u, &x, 4);
  if ((u & 0x7F800000u) == 0) u &= 0x80000000u;                     /* zero, denormal → ±0 */
  else if ((u & 0x7FFFFFFFu) > 0x7F800000u) u = (u | 0x00400000u) & 0xFFFF0000u; /* quiet NaN */
  else u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;           /* nearest even */
  float r;
  memcpy(&r, &u, 4);
  return r;
}

/* The naive bf16 GEMM: px_portable_sgemm_conv with each operand element rounded to bf16 (the
 * products are then exact in fp32: 8 × 8 significant bits), summed in k order in fp32. */
void px_portable_bgemm_conv(int transA, int transB, long M, long N, long K, float alpha,
                            const float *A, long lda, px_cols acols, const float *B, long ldb,
                            px_cols bcols, const px_conv *bconv, float beta, float *C, long ldc,
                            px_cols ccols, long jorg, const float *bias, float *packA,
                            float *packB) {
  (void)packA;
  (void)packB;
  for (long i = 0; i < M; i++)
    for (long j = 0; j < N; j++) {
      long jj = jorg + j;
      float acc = 0;
      for (long p = 0; p < K; p++) {
        float a = transA ? A[p * lda + i] : A[i * lda + px_offset(acols, p)];
        float b = bconv    ? px_conv_b(bconv, B, p, jj)
                  : transB ? B[jj * ldb + p]
                           : B[p * ldb + px_offset(bcols, jj)];
        acc += px_bf16_round(a) * px_bf16_round(b);
      }
      float *c = C + i * ldc + px_offset(ccols, jj);
      *c = alpha * acc + (beta == 0 ? 0 : beta * *c) + (bias ? bias[i] : 0);
    }
}

void px_portable_nchw_to_nhwc(float *dst, const float *src, long s0, long s1, long C, long hw) {
  for (long s = s0; s < s1; s++)
    for (long c = 0; c < C; c++)
      for (long p = 0; p < hw; p++) dst[(s * hw + p) * C + c] = src[(s * C + c) * hw + p];
}

void px_portable_conv_wgrad_nhwc(long M, long S, const px_conv *cv, float alpha,
                                 const float *dy, px_cols acols, const float *xt, float beta,
                                 float *G, long j0, long j1, float *packA, float *packB) {
  (void)packA;
  (void)packB;
  long h = cv->h, w = cv->w, hw = h * w, C = cv->C, kk = cv->k, pad = cv->pad;
  long N = kk * kk * C;
  for (long o = 0; o < M; o++)
    for (long j = j0; j < j1; j++) {
      long tap = j / C, c = j % C, ki = tap / kk, kj = tap % kk;
      float acc = 0;
      for (long q = 0; q < S * hw; q++) {
        long p = q % hw, y = p / w + ki - pad, x = p % w + kj - pad;
        if (y < 0 || y >= h || x < 0 || x >= w) continue;
        acc += dy[o * hw + px_offset(acols, q)] * xt[(q - p + y * w + x) * C + c];
      }
      float *g = G + o * N + j;
      *g = alpha * acc + (beta == 0 ? 0 : beta * *g);
    }
}

/* ---- BatchNorm ---------------------------------------------------------------------------- */

void px_portable_sum(const float *x, long n, double *sum) {
  double s = 0;
  for (long i = 0; i < n; i++) s += x[i];
  *sum += s;
}

void px_portable_sum_sumsq(const float *x, long n, double *sum, double *sumsq) {
  double s = 0, q = 0;
  for (long i = 0; i < n; i++) {
    s += x[i];
    q += (double)x[i] * x[i];
  }
  *sum += s;
  *sumsq += q;
}

void px_portable_sum_dot(const float *dy, const float *xh, long n, double *sum, double *dot) {
  double s = 0, d = 0;
  for (long i = 0; i < n; i++) {
    s += dy[i];
    d += (double)dy[i] * xh[i];
  }
  *sum += s;
  *dot += d;
}

void px_portable_bn_forward(float *y, float *xh, const float *x, long n, float mu, float r,
                            float g, float b) {
  for (long i = 0; i < n; i++) {
    float h = (x[i] - mu) * r;
    xh[i] = h;
    y[i] = g * h + b;
  }
}

void px_portable_bn_backward(float *dx, const float *dy, const float *xh, long n, float k,
                             float mdy, float mdx) {
  for (long i = 0; i < n; i++) dx[i] = k * (dy[i] - mdy - xh[i] * mdx);
}

void px_portable_bn_relu_forward(float *y, float *xh, const float *x, long n, float mu, float r,
                                 float g, float b) {
  for (long i = 0; i < n; i++) {
    float h = (x[i] - mu) * r, v = g * h + b;
    xh[i] = h;
    y[i] = v > 0 ? v : 0;
  }
}

void px_portable_sum_dot_relu(const float *dy, const float *xh, long n, float g, float b,
                              double *sum, double *dot) {
  double s = 0, d = 0;
  for (long i = 0; i < n; i++) {
    if (!(g * xh[i] + b > 0)) continue;
    s += dy[i];
    d += (double)dy[i] * xh[i];
  }
  *sum += s;
  *dot += d;
}

void px_portable_bn_relu_backward(float *dx, const float *dy, const float *xh, long n, float k,
                                  float mdy, float mdx, float g, float b) {
  for (long i = 0; i < n; i++) {
    float d = g * xh[i] + b > 0 ? dy[i] : 0;
    dx[i] = k * (d - mdy - xh[i] * mdx);
  }
}

/* ---- Residual tail ------------------------------------------------------------------------ */

void px_portable_add_relu(float *y, const float *a, const float *b, long n) {
  for (long i = 0; i < n; i++) {
    float v = a[i] + b[i];
    y[i] = v <= 0 ? 0 : v; /* NaN stays */
  }
}

void px_portable_relu_backward(float *g, const float *y, const float *dy, long n) {
  for (long i = 0; i < n; i++) g[i] = y[i] > 0 ? dy[i] : 0;
}

/* ---- im2col / col2im ---------------------------------------------------------------------- */

/* Both strides: dst row (c·k + ki)·k + kj, column s·ho·wo + i·wo + j reads
 * src[s, c, i·st − pad + ki, j·st − pad + kj] (zero outside); `add` runs the adjoint. */
static void px_im2col(int add, long st, float *col, float *img, long samples, long C, long h,
                      long w, long k, long pad, long ho, long wo, long c0, long c1) {
  long cols = samples * ho * wo;
  for (long c = c0; c < c1; c++)
    for (long ki = 0; ki < k; ki++)
      for (long kj = 0; kj < k; kj++) {
        float *row = col + ((c * k + ki) * k + kj) * cols;
        /* The output columns j0..<j1 read inside the image: 0 <= j·st − pad + kj < w. */
        long lo = pad - kj, hi = w - 1 + pad - kj;
        long j0 = lo <= 0 ? 0 : (lo + st - 1) / st, j1 = hi < 0 ? 0 : hi / st + 1;
        if (j0 > wo) j0 = wo;
        if (j1 > wo) j1 = wo;
        if (j1 < j0) j1 = j0;
        for (long s = 0; s < samples; s++) {
          float *plane = img + (s * C + c) * h * w;
          for (long i = 0; i < ho; i++) {
            float *r = row + (s * ho + i) * wo;
            long y = i * st - pad + ki;
            if (y < 0 || y >= h) {
              if (!add) memset(r, 0, (size_t)wo * sizeof(float));
              continue;
            }
            long b = y * w + kj - pad; /* plane[b + j·st] is column j's input */
            if (add) {
              for (long j = j0; j < j1; j++) plane[b + j * st] += r[j];
            } else {
              for (long j = 0; j < j0; j++) r[j] = 0;
              if (st == 1)
                for (long j = j0; j < j1; j++) r[j] = plane[b + j];
              else
                for (long j = j0; j < j1; j++) r[j] = plane[b + j * st];
              for (long j = j1; j < wo; j++) r[j] = 0;
            }
          }
        }
      }
}

void px_portable_im2col_s1(float *dst, const float *src, long samples, long C, long h, long w,
                           long k, long pad, long ho, long wo, long c0, long c1) {
  px_im2col(0, 1, dst, (float *)src, samples, C, h, w, k, pad, ho, wo, c0, c1);
}

void px_portable_col2im_s1(float *dst, const float *src, long samples, long C, long h, long w,
                           long k, long pad, long ho, long wo, long c0, long c1) {
  px_im2col(1, 1, (float *)src, dst, samples, C, h, w, k, pad, ho, wo, c0, c1);
}

void px_portable_im2col_s2(float *dst, const float *src, long samples, long C, long h, long w,
                           long k, long pad, long ho, long wo, long c0, long c1) {
  px_im2col(0, 2, dst, (float *)src, samples, C, h, w, k, pad, ho, wo, c0, c1);
}

void px_portable_col2im_s2(float *dst, const float *src, long samples, long C, long h, long w,
                           long k, long pad, long ho, long wo, long c0, long c1) {
  px_im2col(1, 2, (float *)src, dst, samples, C, h, w, k, pad, ho, wo, c0, c1);
}

/* ---- Max pooling -------------------------------------------------------------------------- */

void px_portable_maxpool2_plane(float *y, int *idx, const float *x, long h, long w) {
  long ho = h / 2, wo = w / 2;
  for (long i = 0; i < ho; i++)
    for (long j = 0; j < wo; j++) {
      long at = 2 * i * w + 2 * j;
      long taps[3] = {at + 1, at + w, at + w + 1};
      float best = x[at];
      for (int t = 0; t < 3; t++) {
        float v = x[taps[t]];
        /* A NaN maximum stays; a NaN or larger value takes over (first wins ties). */
        if (best == best && (v > best || v != v)) {
          best = v;
          at = taps[t];
        }
      }
      y[i * wo + j] = best;
      idx[i * wo + j] = (int)at;
    }
}

void px_portable_maxpool2_plane_backward(float *dx, const int *idx, const float *dy, long h,
                                         long w) {
  long ho = h / 2, wo = w / 2;
  for (long p = 0; p < h * w; p++) dx[p] = 0;
  for (long o = 0; o < ho * wo; o++) dx[idx[o]] = dy[o];
}

/* ---- BatchNorm + ReLU + 2×2 max pooling --------------------------------------------------- */

static inline float px_bn_relu_value(float x, float mu, float r, float g, float b) {
  float h = (x - mu) * r, v = g * h + b;
  return v > 0 ? v : 0;
}

void px_portable_bn_relu_pool2_forward(float *y, int *idx, const float *x, long h, long w,
                                       float mu, float r, float g, float b) {
  long ho = h / 2, wo = w / 2;
  for (long i = 0; i < ho; i++)
    for (long j = 0; j < wo; j++) {
      long at = 2 * i * w + 2 * j;
      long taps[3] = {at + 1, at + w, at + w + 1};
      float best = px_bn_relu_value(x[at], mu, r, g, b);
      for (int t = 0; t < 3; t++) {
        float v = px_bn_relu_value(x[taps[t]], mu, r, g, b);
        if (v > best) { /* v is never NaN after the ReLU; the first wins ties */
          best = v;
          at = taps[t];
        }
      }
      y[i * wo + j] = best;
      idx[i * wo + j] = (int)at;
    }
}

/* The pooled gradient at position p = rr·w + c of the plane: dy of p's window where idx names
 * p, else (and outside every window) 0. */
static inline float px_pool2_routed(const float *dy, const int *idx, long rr, long c, long w,
                                    long ho, long wo) {
  if (rr >= 2 * ho || c >= 2 * wo) return 0;
  long o = rr / 2 * wo + c / 2;
  return idx[o] == rr * w + c ? dy[o] : 0;
}

void px_portable_sum_dot_relu_pool2(const float *dy, const int *idx, const float *x, long h,
                                    long w, float mu, float r, float g, float b, double *sum,
                                    double *dot) {
  long ho = h / 2, wo = w / 2;
  double s = 0, d = 0;
  for (long rr = 0; rr < h; rr++)
    for (long c = 0; c < w; c++) {
      float hx = (x[rr * w + c] - mu) * r;
      if (!(g * hx + b > 0)) continue;
      float dv = px_pool2_routed(dy, idx, rr, c, w, ho, wo);
      s += dv;
      d += (double)dv * hx;
    }
  *sum += s;
  *dot += d;
}

void px_portable_bn_relu_pool2_backward(float *dx, const float *dy, const int *idx,
                                        const float *x, long h, long w, float mu, float r,
                                        float k, float mdy, float mdx, float g, float b) {
  long ho = h / 2, wo = w / 2;
  for (long rr = 0; rr < h; rr++)
    for (long c = 0; c < w; c++) {
      float hx = (x[rr * w + c] - mu) * r;
      float d = g * hx + b > 0 ? px_pool2_routed(dy, idx, rr, c, w, ho, wo) : 0;
      dx[rr * w + c] = k * (d - mdy - hx * mdx);
    }
}

/* ---- 3×3 same convolution, one plane ------------------------------------------------------ */

void px_portable_conv3_plane(float *y, const float *x, long C, long h, long w, const float *wt,
                             float bias) {
  for (long i = 0; i < h; i++)
    for (long j = 0; j < w; j++) {
      float acc = 0;
      for (long c = 0; c < C; c++)
        for (long ki = 0; ki < 3; ki++) {
          long r = i + ki - 1;
          if (r < 0 || r >= h) continue;
          for (long kj = 0; kj < 3; kj++) {
            long q = j + kj - 1;
            if (q < 0 || q >= w) continue;
            acc += wt[(c * 3 + ki) * 3 + kj] * x[(c * h + r) * w + q];
          }
        }
      y[i * w + j] = acc + bias;
    }
}

void px_portable_conv3_wgrad_plane(float *dw, const float *g, const float *x, long C, long h,
                                   long w, int round) {
  for (long c = 0; c < C; c++)
    for (long ki = 0; ki < 3; ki++)
      for (long kj = 0; kj < 3; kj++) {
        float acc = 0;
        for (long i = 0; i < h; i++) {
          long r = i + ki - 1;
          if (r < 0 || r >= h) continue;
          for (long j = 0; j < w; j++) {
            long q = j + kj - 1;
            if (q < 0 || q >= w) continue;
            float gv = round ? px_bf16_round(g[i * w + j]) : g[i * w + j];
            acc += gv * x[(c * h + r) * w + q];
          }
        }
        dw[(c * 3 + ki) * 3 + kj] += acc;
      }
}
