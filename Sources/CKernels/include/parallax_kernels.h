/* Parallax's own C kernels: a blocked SGEMM (plain, column-blocked and implicit-im2col
 * operands), BatchNorm, im2col/col2im, 2×2 max pooling and the residual add + ReLU.
 *
 * Every function here exists on every architecture and is safe to call on any CPU: each one
 * dispatches at run time to its AVX-512F version (x86-64 builds, CPU and OS with AVX-512F)
 * or to a portable C version. `swift build -Xcc -DPX_PORTABLE=1` compiles the AVX-512F
 * versions out (scripts/test-portable.sh). Model's `Gemm` still checks
 * `px_sgemm_available()` and prefers OpenBLAS and its Swift loops where the fast path is
 * missing; the portable versions are the reference the fast ones are tested against.
 *
 * Legend: S samples, C channels, h×w an input plane, k the kernel size, ho×wo an output plane.
 * Row-major matrices, as cblas_sgemm(CblasRowMajor, …).
 */
#ifndef PARALLAX_KERNELS_H
#define PARALLAX_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Blocking of the SGEMM: MR×NR micro-tiles, KC×NC packed B panels (KC·NC floats = 1 MiB stay
 * within a core's L2; 4096 columns did not and ran the 64-channel convolutions ~20 % slower),
 * MC×KC packed A blocks. PX_CONV_KMAX is the largest kernel the implicit im2col takes. */
enum { PX_MR = 8, PX_NR = 32, PX_KC = 256, PX_MC = 128, PX_NC = 1024, PX_CONV_KMAX = 7 };

/* ---- Dispatch ----------------------------------------------------------------------------- */

/* The implementations behind the px_* kernels. */
enum { PX_PATH_PORTABLE = 0, PX_PATH_AVX512 = 1 };

/* The fastest path compiled into this build (PX_PATH_PORTABLE with PX_PORTABLE or off x86-64). */
int px_path_compiled(void);
/* The fastest path this build and CPU support: AVX-512 needs an x86-64 build without
 * PX_PORTABLE and a CPU and OS with AVX-512F and FMA (XCR0 saving opmask and all ZMM state). */
int px_path_supported(void);
/* The path the kernels run: px_path_supported() unless px_path_force lowered it. */
int px_path(void);
/* Runs the kernels on `path` (clamped to px_path_supported()) and returns the previous path.
 * For tests and comparisons; thread-safe, but a kernel already running keeps its path. */
int px_path_force(int path);
/* 1 when the AVX-512 path is supported (px_path_supported() == PX_PATH_AVX512), whatever
 * px_path_force chose: Model's `Gemm` uses it to pick this SGEMM over OpenBLAS. */
int px_sgemm_available(void);

/* ---- SGEMM -------------------------------------------------------------------------------- */

/* Where logical column j of a matrix lives: `blk == 0` plain (offset j); otherwise columns
 * come in blocks of `blk` that are `bst` floats apart: offset (j / blk)·bst + j % blk. A
 * convolution's [O, S·H·W] GEMM operand seen over NCHW memory is blk = H·W, bst = O·H·W. */
typedef struct { long blk; long bst; } px_cols;

/* A convolution's implicit im2col: B[K = C·k·k, N = S·ho·wo] read straight from x [S, C, h, w]:
 * B[(c·k + ki)·k + kj, s·ho·wo + i·wo + j] = x[s, c, i·stride + ki − pad, j·stride + kj − pad],
 * zero outside the plane (the column buffer is never written). With `transposed`, op(B) is
 * its transpose [S·ho·wo, C·k·k] (for the weight gradient). k ≤ PX_CONV_KMAX, and the caller
 * keeps S·C·h·w < 2³¹ (int32 gather offsets). */
typedef struct { long C, h, w, k, pad, transposed, stride, ho, wo; } px_conv;

/* C[M×N] = alpha · op(A)[M×K] · op(B)[K×N] + beta · C (beta == 0: C is not read), plain
 * row-major matrices. `packA` holds PX_MC·PX_KC floats and `packB` PX_KC·PX_NC floats, both
 * 64-byte aligned (used by the AVX-512 path only). Single-threaded: callers split N. */
void px_sgemm(int transA, int transB, long M, long N, long K, float alpha, const float *A,
              long lda, const float *B, long ldb, float beta, float *C, long ldc, float *packA,
              float *packB);

/* The general form: `acols` lays out A's K columns (transA == 0 only), `bcols` B's N columns
 * (transB == 0 only) and `ccols` C's N columns; logical column j of B and C is column
 * `jorg + j` of the layout (a thread's slice of N). `bias` (NULL or [M]) is added to every
 * row of C once. */
void px_sgemm_ex(int transA, int transB, long M, long N, long K, float alpha, const float *A,
                 long lda, px_cols acols, const float *B, long ldb, px_cols bcols, float beta,
                 float *C, long ldc, px_cols ccols, long jorg, const float *bias, float *packA,
                 float *packB);

/* As px_sgemm_ex, with `bconv` (not NULL, transB == 0) making B the implicit im2col of the
 * NCHW tensor at `B` (or, with `bconv->transposed`, its transpose; ldb and bcols unused). */
void px_sgemm_conv(int transA, int transB, long M, long N, long K, float alpha, const float *A,
                   long lda, px_cols acols, const float *B, long ldb, px_cols bcols,
                   const px_conv *bconv, float beta, float *C, long ldc, px_cols ccols, long jorg,
                   const float *bias, float *packA, float *packB);

/* NCHW → NHWC: dst[(s·hw + p)·C + c] = src[(s·C + c)·hw + p] for samples s0 ..< s1 (C a
 * multiple of 16). */
void px_nchw_to_nhwc(float *dst, const float *src, long s0, long s1, long C, long hw);

/* The weight gradient of a stride-1 "same" convolution from x in NHWC (`xt`, C a multiple of
 * 32), columns in tap-major order: G[o, (ki·k + kj)·C + c] = α·Σ_{s,p} dY[s, o, p] ·
 * x[s, c, p + (ki − pad, kj − pad)] + β·G, for G's columns j0 ..< j1 (multiples of 32, row
 * stride k·k·C). dY is A (M = O ≤ PX_MC rows, K = S·h·w columns over NCHW memory: `acols`,
 * lda = h·w). */
void px_conv_wgrad_nhwc(long M, long S, const px_conv *cv, float alpha, const float *dy,
                        px_cols acols, const float *xt, float beta, float *G, long j0, long j1,
                        float *packA, float *packB);

/* ---- bf16 GEMM (fp32 operands rounded to bf16 in the packing, fp32 accumulation) ---------- */

/* The implementations behind px_bgemm_conv, slowest first. */
enum { PX_BF16_PORTABLE = 0, PX_BF16_AVX512 = 1, PX_BF16_AMX = 2 };

/* The fastest bf16 path this build and CPU support: AMX needs CPUID AMX-TILE and AMX-BF16, the
 * OS's XTILECFG/XTILEDATA state in XCR0 and the Linux permission (arch_prctl
 * ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, requested once here), plus AVX-512-BF16 for the
 * packing; AVX-512-BF16 needs the AVX-512 path and CPUID.(7,1):EAX[5]. */
int px_bf16_path_supported(void);
/* The path px_bgemm_conv runs: px_bf16_path_supported() unless px_bf16_path_force lowered it. */
int px_bf16_path(void);
/* Runs px_bgemm_conv on `path` (clamped to px_bf16_path_supported()); returns the previous
 * path. For tests and comparisons, as px_path_force. */
int px_bf16_path_force(int path);

/* x rounded to bf16 and back: round to nearest even, zero and denormal inputs to a zero of
 * their sign, NaN stays NaN (quiet) — what vcvtneps2bf16 does to each operand. */
float px_bf16_round(float x);

/* As px_sgemm_conv (same operands, layouts and buffers), with every element of op(A) and op(B)
 * rounded by px_bf16_round and the products summed in fp32. The portable path is the naive
 * loop (its own reference); the fast paths sum in another order and flush denormal partial
 * sums, so they match it to fp32 rounding, not bit for bit. */
void px_bgemm_conv(int transA, int transB, long M, long N, long K, float alpha, const float *A,
                   long lda, px_cols acols, const float *B, long ldb, px_cols bcols,
                   const px_conv *bconv, float beta, float *C, long ldc, px_cols ccols, long jorg,
                   const float *bias, float *packA, float *packB);

/* ---- Measured peak of one core (peak.c) ----------------------------------------------------- */

/* The multiply-add units a peak can be measured for. */
enum {
  PX_PEAK_FP32_AVX512 = 0, /* vfmadd…ps on zmm: the fp32 GEMM of the AVX-512 path */
  PX_PEAK_FP32_AVX2 = 1,   /* vfmadd…ps on ymm: OpenBLAS's fp32 GEMM on AVX2 CPUs */
  PX_PEAK_BF16_AVX512 = 2, /* vdpbf16ps on zmm: the AVX-512-BF16 bf16 GEMM */
  PX_PEAK_BF16_AMX = 3     /* tdpbf16ps on tiles: the AMX bf16 GEMM */
};
/* 1 when this build and CPU (and, for AMX, the OS permission) can run `unit`'s loop. */
int px_peak_supported(int unit);
/* GFLOP/s of one thread on `unit`: a loop of independent multiply-adds on register (or tile)
 * operands, the fastest of three runs of about seconds/3 each; 0 where unsupported. */
double px_peak_gflops(int unit, double seconds);

/* ---- BatchNorm (one plane of n floats per call) ------------------------------------------- */

/* *sum += Σx (also a convolution's bias gradient, one plane of dY per call). */
void px_sum(const float *x, long n, double *sum);
/* *sum += Σx, *sumsq += Σx². */
void px_sum_sumsq(const float *x, long n, double *sum, double *sumsq);
/* *sum += Σdy, *dot += Σdy·xh. */
void px_sum_dot(const float *dy, const float *xh, long n, double *sum, double *dot);
/* xh = (x − mu)·r, y = g·xh + b. */
void px_bn_forward(float *y, float *xh, const float *x, long n, float mu, float r, float g,
                   float b);
/* dx = k·(dy − mdy − xh·mdx). */
void px_bn_backward(float *dx, const float *dy, const float *xh, long n, float k, float mdy,
                    float mdx);
/* BatchNorm followed by ReLU (one pass): xh = (x − mu)·r, y = max(g·xh + b, 0). */
void px_bn_relu_forward(float *y, float *xh, const float *x, long n, float mu, float r, float g,
                        float b);
/* As px_sum_dot on dy masked by the ReLU (dy where g·xh + b > 0, else 0). */
void px_sum_dot_relu(const float *dy, const float *xh, long n, float g, float b, double *sum,
                     double *dot);
/* As px_bn_backward on dy masked by the ReLU. */
void px_bn_relu_backward(float *dx, const float *dy, const float *xh, long n, float k, float mdy,
                         float mdx, float g, float b);

/* ---- Residual tail ------------------------------------------------------------------------ */

/* y = a + b where that is > 0 or NaN, else 0 (Swift's max(a + b, 0)). */
void px_add_relu(float *y, const float *a, const float *b, long n);
/* Its backward through the ReLU: g = dy where y > 0, else 0. */
void px_relu_backward(float *g, const float *y, const float *dy, long n);

/* ---- im2col / col2im ---------------------------------------------------------------------- */

/* im2col for stride 1 (channels c0 ..< c1 of C): src [S, C, h, w] into dst [C·k·k, S·ho·wo]
 * (row (c·k + ki)·k + kj, column s·ho·wo + i·wo + j), zero padding `pad`. */
void px_im2col_s1(float *dst, const float *src, long samples, long C, long h, long w, long k,
                  long pad, long ho, long wo, long c0, long c1);
/* The adjoint of px_im2col_s1: adds the columns of src [C·k·k, S·ho·wo] into dst [S, C, h, w]. */
void px_col2im_s1(float *dst, const float *src, long samples, long C, long h, long w, long k,
                  long pad, long ho, long wo, long c0, long c1);
/* im2col for stride 2, as px_im2col_s1: out column j of a row reads input column
 * 2j − pad + kj. */
void px_im2col_s2(float *dst, const float *src, long samples, long C, long h, long w, long k,
                  long pad, long ho, long wo, long c0, long c1);
/* The adjoint of px_im2col_s2. */
void px_col2im_s2(float *dst, const float *src, long samples, long C, long h, long w, long k,
                  long pad, long ho, long wo, long c0, long c1);

/* ---- Max pooling -------------------------------------------------------------------------- */

/* 2×2 stride-2 max pooling of one [h, w] plane into y [h/2, w/2] with idx, the index in the
 * plane of each window's maximum: first in scan order on ties, NaN wins (as PyTorch). */
void px_maxpool2_plane(float *y, int *idx, const float *x, long h, long w);
/* Its backward: dx [h, w] gets each window's gradient at its argmax and zero elsewhere
 * (including a last row/column outside every window). */
void px_maxpool2_plane_backward(float *dx, const int *idx, const float *dy, long h, long w);

/* ---- BatchNorm + ReLU + 2×2 max pooling in one layer (training) --------------------------- */

/* The three passes of a BatchNorm → ReLU → MaxPool(2, 2) block that never writes the BN
 * output v = max(g·x̂ + b, 0) nor x̂ = (x − mu)·r: both are recomputed from the layer's input
 * x [h, w] (one plane) with the same operations as px_bn_relu_forward. */

/* y [h/2, w/2], idx: px_maxpool2_plane of v. */
void px_bn_relu_pool2_forward(float *y, int *idx, const float *x, long h, long w, float mu,
                              float r, float g, float b);
/* As px_sum_dot_relu on dv, the pooled gradient dy [h/2, w/2] routed to its window's argmax
 * idx (what px_maxpool2_plane_backward writes): *sum += Σ dv·[g·x̂ + b > 0],
 * *dot += Σ dv·[…]·x̂. */
void px_sum_dot_relu_pool2(const float *dy, const int *idx, const float *x, long h, long w,
                           float mu, float r, float g, float b, double *sum, double *dot);
/* As px_bn_relu_backward on dv and x̂: dx [h, w] = k·(dv·[g·x̂ + b > 0] − mdy − x̂·mdx). */
void px_bn_relu_pool2_backward(float *dx, const float *dy, const int *idx, const float *x,
                               long h, long w, float mu, float r, float k, float mdy, float mdx,
                               float g, float b);

/* ---- A 3×3 "same" convolution, one output plane at a time (the fused conv4 stem) --------- */

/* y [h, w] = Σ over c, ki, kj (in that order, one multiply-add each) of
 * wt[(c·3 + ki)·3 + kj] · x[c, i + ki − 1, j + kj − 1], zero outside the C planes x [C, h, w]
 * (stride 1, padding 1), then + bias (as the GEMMs add it). */
void px_conv3_plane(float *y, const float *x, long C, long h, long w, const float *wt,
                    float bias);
/* Its weight gradient for one output plane g [h, w]: dw[(c·3 + ki)·3 + kj] +=
 * Σ_{i,j} g[i, j] · x[c, i + ki − 1, j + kj − 1]. With `round`, each g is first rounded as
 * px_bf16_round (the bf16 GEMM's operand rounding; x is passed already rounded). */
void px_conv3_wgrad_plane(float *dw, const float *g, const float *x, long C, long h, long w,
                          int round);

#ifdef __cplusplus
}
#endif
#endif
