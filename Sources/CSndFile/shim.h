#ifndef PARALLAX_CSNDFILE_SHIM_H
#define PARALLAX_CSNDFILE_SHIM_H
#include <sndfile.h>
#endif
