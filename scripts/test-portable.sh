#!/usr/bin/env bash
# Builds with Parallax's AVX-512 kernels compiled out (CKernels' portable C only, as on
# aarch64 or CPUs without AVX-512) and runs the kernel tests (ModelTests) on that build.
# A separate build directory keeps the normal debug build intact.
#   bash scripts/test-portable.sh [extra swift test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(--build-path .build/portable -Xcc -DPX_PORTABLE=1)
swift build "${flags[@]}" --build-tests
swift test "${flags[@]}" --skip-build --filter ModelTests "$@"
