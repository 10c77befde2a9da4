#!/usr/bin/env bash
# MT-SLVR audio figure (issue 7): 5-way 1-shot few-shot accuracy (95% CI) for word, language
# and voice on the spoken-digit corpus, for contrastive only (simclr), predictive only
# (transform-pred), MT-SLVR with task-specific BN adapters and MT-SLVR with parallel
# residual adapters, plus a (practically) randomly initialised resnet18.
#
# All pretraining runs share configs/clmr-digits.yaml (resnet18 on 1×16×33 log-mel, 8 kHz,
# global batch 32 over 2 ranks, LARS, sync BN, seed 0), the same augmentation preset
# (mtslvr) and the same short budget (STEPS optimizer steps; the cosine schedule spans them).
# Results: bench/MTSLVR_AUDIO_RESULTS.md.
#
# Usage: [SEED=0] bench/mtslvr_audio_figures.sh [PARALLAX] [OUT] [STEPS]
set -euo pipefail
PX=${1:-.build/release/parallax}
OUT=${2:-/tmp/mts}
STEPS=${3:-60}
SEED=${SEED:-0}
NP=2
MPI=(mpirun -np "$NP")
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mkdir -p "$OUT"
[ -f "$OUT/digits/manifest.csv" ] || "$PX" data spoken-digits --out "$OUT/digits" --jobs 2

COMMON=(--config configs/clmr-digits.yaml --data-dir "$OUT/digits" --augment-preset mtslvr
  --max-steps "$STEPS" --seed "$SEED" --log-every 10)

run() { # name, extra pretrain flags…
  local name=$1; shift
  echo "== $name: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/$name.log"
  /usr/bin/time -f "$name pretrain wall %e s (user %U s)" \
    "${MPI[@]}" "$PX" pretrain "${COMMON[@]}" --run-dir "$OUT/$name" "$@" 2>&1 | tee -a "$OUT/$name.log"
  echo "== $name eval: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/$name.log"
  /usr/bin/time -f "$name fewshot wall %e s" \
    "${MPI[@]}" "$PX" eval fewshot --checkpoint "$OUT/$name/latest" --data-dir "$OUT/digits" \
    --ways 5 --shots 1 --queries 15 --tasks 1000 --labels word language voice 2>&1 | tee -a "$OUT/$name.log"
}

run simclr --method simclr
run transform-pred --method transform-pred
run mtslvr-bn --method mtslvr --adapter bn
run mtslvr-parallel --method mtslvr --adapter parallel
# A practically random encoder: one step at a vanishing learning rate (weights move by
# < 1e-9; BN running statistics see one batch). There is no "evaluate an untrained
# encoder" flag, so this is the cheapest stand-in.
STEPS=1 COMMON=(--config configs/clmr-digits.yaml --data-dir "$OUT/digits" --augment-preset mtslvr
  --max-steps 1 --seed "$SEED" --log-every 1 --base-lr 1e-9)
run random --method simclr
