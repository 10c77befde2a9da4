#!/usr/bin/env bash
# The main job: installs what is missing, builds, pretrains SimCLR (conv4) on Fashion-MNIST
# with 2 MPI ranks, then prints linear-probe accuracy for the trained encoder, a randomly
# initialised encoder and raw pixels.
# Usage: bash scripts/main-job.sh [extra pretrain flags, e.g. --epochs 1]   (RANKS=N to change)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh release
exec .build/release/parallax launch -n "${RANKS:-2}" -- \
  pretrain --config configs/simclr-fmnist.yaml --probe "$@"
