#ifndef PARALLAX_CSAMPLERATE_SHIM_H
#define PARALLAX_CSAMPLERATE_SHIM_H
#include <samplerate.h>
#endif
