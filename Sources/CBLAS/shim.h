#ifndef PARALLAX_CBLAS_SHIM_H
#define PARALLAX_CBLAS_SHIM_H
#include <cblas.h>
#include "parallax_sgemm.h"
#include "parallax_kernels.h"
#endif
