/* What the kernel files share: whether the AVX-512 path is compiled, and the list of
 * dispatched kernels (name, parameters, arguments), from which internal.h declares the
 * px_avx512_* and px_portable_* twins and dispatch.c defines the public px_* functions. */
#ifndef PARALLAX_KERNELS_INTERNAL_H
#define PARALLAX_KERNELS_INTERNAL_H

#include "parallax_kernels.h"

/* The AVX-512F kernels exist in x86-64 builds with GCC/Clang unless PX_PORTABLE is set
 * (`swift build -Xcc -DPX_PORTABLE=1`). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !(defined(PX_PORTABLE) && PX_PORTABLE)
#define PX_HAVE_AVX512 1
#else
#define PX_HAVE_AVX512 0
#endif

#define PX_KERNELS(X)                                                                         \
  X(sgemm_conv,                                                                               \
    (int transA, int transB, long M, long N, long K, float alpha, const float *A, long lda,   \
     px_cols acols, const float *B, long ldb, px_cols bcols, const px_conv *bconv,            \
     float beta, float *C, long ldc, px_cols ccols, long jorg, const float *bias,             \
     float *packA, float *packB),                                                             \
    (transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, bconv, beta, C, ldc,       \
     ccols, jorg, bias, packA, packB))                                                        \
  X(nchw_to_nhwc, (float *dst, const float *src, long s0, long s1, long C, long hw),          \
    (dst, src, s0, s1, C, hw))                                                                \
  X(conv_wgrad_nhwc,                                                                          \
    (long M, long S, const px_conv *cv, float alpha, const float *dy, px_cols acols,          \
     const float *xt, float beta, float *G, long j0, long j1, float *packA, float *packB),    \
    (M, S, cv, alpha, dy, acols, xt, beta, G, j0, j1, packA, packB))                          \
  X(sum, (const float *x, long n, double *sum), (x, n, sum))                                 \
  X(sum_sumsq, (const float *x, long n, double *sum, double *sumsq), (x, n, sum, sumsq))      \
  X(sum_dot, (const float *dy, const float *xh, long n, double *sum, double *dot),            \
    (dy, xh, n, sum, dot))                                                                    \
  X(bn_forward,                                                                               \
    (float *y, float *xh, const float *x, long n, float mu, float r, float g, float b),       \
    (y, xh, x, n, mu, r, g, b))                                                               \
  X(bn_backward,                                                                              \
    (float *dx, const float *dy, const float *xh, long n, float k, float mdy, float mdx),     \
    (dx, dy, xh, n, k, mdy, mdx))                                                             \
  X(bn_relu_forward,                                                                          \
    (float *y, float *xh, const float *x, long n, float mu, float r, float g, float b),       \
    (y, xh, x, n, mu, r, g, b))                                                               \
  X(sum_dot_relu,                                                                             \
    (const float *dy, const float *xh, long n, float g, float b, double *sum, double *dot),   \
    (dy, xh, n, g, b, sum, dot))                                                              \
  X(bn_relu_backward,                                                                         \
    (float *dx, const float *dy, const float *xh, long n, float k, float mdy, float mdx,      \
     float g, float b),                                                                       \
    (dx, dy, xh, n, k, mdy, mdx, g, b))                                                       \
  X(add_relu, (float *y, const float *a, const float *b, long n), (y, a, b, n))               \
  X(relu_backward, (float *g, const float *y, const float *dy, long n), (g, y, dy, n))        \
  X(im2col_s1, PX_IM2COL_PARAMS, PX_IM2COL_ARGS)                                              \
  X(col2im_s1, PX_IM2COL_PARAMS, PX_IM2COL_ARGS)                                              \
  X(im2col_s2, PX_IM2COL_PARAMS, PX_IM2COL_ARGS)                                              \
  X(col2im_s2, PX_IM2COL_PARAMS, PX_IM2COL_ARGS)                                              \
  X(maxpool2_plane, (float *y, int *idx, const float *x, long h, long w), (y, idx, x, h, w))  \
  X(maxpool2_plane_backward, (float *dx, const int *idx, const float *dy, long h, long w),    \
    (dx, idx, dy, h, w))                                                                      \
  X(bn_relu_pool2_forward,                                                                    \
    (float *y, int *idx, const float *x, long h, long w, float mu, float r, float g, float b), \
    (y, idx, x, h, w, mu, r, g, b))                                                           \
  X(sum_dot_relu_pool2,                                                                       \
    (const float *dy, const int *idx, const float *x, long h, long w, float mu, float r,      \
     float g, float b, double *sum, double *dot),                                             \
    (dy, idx, x, h, w, mu, r, g, b, sum, dot))                                                \
  X(bn_relu_pool2_backward,                                                                   \
    (float *dx, const float *dy, const int *idx, const float *x, long h, long w, float mu,    \
     float r, float k, float mdy, float mdx, float g, float b),                               \
    (dx, dy, idx, x, h, w, mu, r, k, mdy, mdx, g, b))                                         \
  X(conv3_plane,                                                                              \
    (float *y, const float *x, long C, long h, long w, const float *wt, float bias),          \
    (y, x, C, h, w, wt, bias))                                                                \
  X(conv3_wgrad_plane,                                                                        \
    (float *dw, const float *g, const float *x, long C, long h, long w, int round),           \
    (dw, g, x, C, h, w, round))

#define PX_IM2COL_PARAMS                                                                      \
  (float *dst, const float *src, long samples, long C, long h, long w, long k, long pad,      \
   long ho, long wo, long c0, long c1)
#define PX_IM2COL_ARGS (dst, src, samples, C, h, w, k, pad, ho, wo, c0, c1)

#define PX_DECLARE_PORTABLE(name, params, args) void px_portable_##name params;
PX_KERNELS(PX_DECLARE_PORTABLE)
#undef PX_DECLARE_PORTABLE

#if PX_HAVE_AVX512
#define PX_DECLARE_AVX512(name, params, args) void px_avx512_##name params;
PX_KERNELS(PX_DECLARE_AVX512)
#undef PX_DECLARE_AVX512
#endif

/* The bf16 GEMM's implementations (bgemm_avx512.c, portable.c), dispatched by hand in
 * dispatch.c (three paths, not two). */
#define PX_BGEMM_PARAMS                                                                       \
  (int transA, int transB, long M, long N, long K, float alpha, const float *A, long lda,     \
   px_cols acols, const float *B, long ldb, px_cols bcols, const px_conv *bconv, float beta,  \
   float *C, long ldc, px_cols ccols, long jorg, const float *bias, float *packA,             \
   float *packB)
#define PX_BGEMM_ARGS                                                                         \
  (transA, transB, M, N, K, alpha, A, lda, acols, B, ldb, bcols, bconv, beta, C, ldc, ccols,  \
   jorg, bias, packA, packB)
void px_portable_bgemm_conv PX_BGEMM_PARAMS;
#if PX_HAVE_AVX512
void px_avx512bf16_bgemm_conv PX_BGEMM_PARAMS;
void px_amx_bgemm_conv PX_BGEMM_PARAMS;
/* Loads the AMX tile configuration both AMX users need (bgemm_avx512.c, peak.c): palette 1,
 * tiles 0–7 of 16 rows × 64 bytes. Only where px_bf16_path_supported() is PX_BF16_AMX. */
void px_amx_configure(void);
#endif

#endif
