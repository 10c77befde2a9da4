#!/usr/bin/env bash
# The main job: installs what is missing, builds, pretrains SimCLR (conv4) on Fashion-MNIST
# with 2 MPI ranks, then prints linear-probe accuracy for the trained encoder, a randomly
# initialised encoder and raw pixels.
# Usage: bash scripts/main-job.sh [extra pretrain flags, e.g. --epochs 3]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh release
ranks="${RANKS:-2}"
root_flags=()
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
exec mpirun -np "$ranks" --bind-to core --map-by core \
  .build/release/parallax pretrain --config configs/simclr-fmnist.yaml --probe "$@"
