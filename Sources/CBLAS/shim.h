#ifndef PARALLAX_CBLAS_SHIM_H
#define PARALLAX_CBLAS_SHIM_H
#include <cblas.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "parallax_sgemm.h"
#include "parallax_kernels.h"
#else
/* Other architectures: the built-in AVX-512 kernels do not exist; px_sgemm_available() is 0,
 * so Model uses cblas_sgemm and its portable Swift loops and never calls these. */
enum { PX_MR = 8, PX_NR = 32, PX_KC = 256, PX_MC = 128, PX_NC = 4096 };
static inline int px_sgemm_available(void) { return 0; }
typedef struct { long blk; long bst; } px_cols;
static inline void px_sgemm_ex(
    int transA, int transB, long M, long N, long K, float alpha, const float *A, long lda,
    px_cols acols, const float *B, long ldb, px_cols bcols, float beta, float *C, long ldc,
    px_cols ccols, long jorg, const float *bias, float *packA, float *packB) {}
static inline void px_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                            const float *A, long lda, const float *B, long ldb, float beta,
                            float *C, long ldc, float *packA, float *packB) {}
static inline void px_sum_sumsq(const float *x, long n, double *sum, double *sumsq) {}
static inline void px_sum_dot(const float *dy, const float *xh, long n, double *sum, double *dot) {}
static inline void px_bn_forward(float *y, float *xh, const float *x, long n, float mu, float r,
                                 float g, float b) {}
static inline void px_bn_backward(float *dx, const float *dy, const float *xh, long n, float k,
                                  float mdy, float mdx) {}
static inline void px_bn_relu_forward(float *y, float *xh, const float *x, long n, float mu,
                                      float r, float g, float b) {}
static inline void px_sum_dot_relu(const float *dy, const float *xh, long n, float g, float b,
                                   double *sum, double *dot) {}
static inline void px_bn_relu_backward(float *dx, const float *dy, const float *xh, long n,
                                       float k, float mdy, float mdx, float g, float b) {}
static inline void px_im2col_s1(float *dst, const float *src, long samples, long C, long h,
                                long w, long k, long pad, long ho, long wo, long c0, long c1) {}
static inline void px_col2im_s1(float *dst, const float *src, long samples, long C, long h,
                                long w, long k, long pad, long ho, long wo, long c0, long c1) {}
static inline void px_maxpool2_plane(float *y, int *idx, const float *x, long h, long w) {}
static inline void px_maxpool2_plane_backward(float *dx, const int *idx, const float *dy, long h,
                                              long w) {}
#endif
#endif
