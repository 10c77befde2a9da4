#!/usr/bin/env bash
# Longer seeded mutation fuzzing of the parsers of outside data (Tests/TrainTests/FuzzTests.swift).
# Usage: scripts/fuzz.sh [ITERATIONS per target, default 20000] [SEED, default 13]
# A trap (crash) ends the test process with a signal: the run then fails and the log shows the input's target.
set -euo pipefail
cd "$(dirname "$0")/.."
export PARALLAX_FUZZ_ITERATIONS="${1:-20000}" PARALLAX_FUZZ_SEED="${2:-13}"
swift build --build-tests
swift test --skip-build --filter FuzzTests 2>&1 | grep -E '^fuzz |error|Executed|signal'
