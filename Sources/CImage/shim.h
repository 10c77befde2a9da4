#ifndef PARALLAX_CIMAGE_SHIM_H
#define PARALLAX_CIMAGE_SHIM_H
// libpng's simplified API (png_image: errors are returned, no setjmp) and libjpeg-turbo's
// TurboJPEG API (errors returned as codes), from Debian's libpng-dev and libturbojpeg0-dev.
#include <png.h>
#include <turbojpeg.h>
#endif
