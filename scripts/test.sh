#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit tests and the
# mpirun tests, which spawn `mpirun -np 2|3` on the built `parallax`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh debug
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build --build-tests
set +e
swift test --skip-build 2>&1 | tee .test-output.log
status=${PIPESTATUS[0]}
set -e
echo "---- summary ----"
grep -E "Executed [0-9]+ tests" .test-output.log | tail -1
exit "$status"
