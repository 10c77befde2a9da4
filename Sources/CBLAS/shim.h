#ifndef PARALLAX_CBLAS_SHIM_H
#define PARALLAX_CBLAS_SHIM_H
#include <cblas.h>
#endif
