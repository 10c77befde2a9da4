#ifndef PARALLAX_CBLAS_SHIM_H
#define PARALLAX_CBLAS_SHIM_H
/* OpenBLAS's CBLAS interface (the fallback GEMM). Parallax's own kernels are the CKernels
 * target. */
#include <cblas.h>
#endif
