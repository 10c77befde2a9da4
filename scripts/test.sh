#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit tests and the
# mpirun tests, which spawn `mpirun -np 2|3` on the built `parallax`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh debug
# rsvg-convert and a venv with tensorboard for the report and event-file tests. CI sets
# PARALLAX_REQUIRE_TEST_TOOLS=1: there a failed install fails the run, and the tests that
# need the tools fail instead of skipping.
if ! bash scripts/test-tools.sh; then
  if [ "${PARALLAX_REQUIRE_TEST_TOOLS:-0}" = 1 ]; then
    echo "error: the test tools could not be installed (scripts/test-tools.sh)" >&2
    exit 1
  fi
  echo "WARNING: the test tools could not be installed: the TensorBoard and report rendering tests will be SKIPPED" >&2
fi
export PARALLAX_TEST_PYTHON="$PWD/.build/test-venv/bin/python"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
swift build --build-tests
set +e
swift test --skip-build 2>&1 | tee .test-output.log
status=${PIPESTATUS[0]}
set -e
echo "---- summary ----"
grep -E "Executed [0-9]+ tests" .test-output.log | tail -1
exit "$status"
