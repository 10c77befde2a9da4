#!/usr/bin/env bash
# The README's supervised multi-task tables (issue 17): single-task baselines and every --mtl
# method on MultiFashion and on the spoken digits, then MT-SLVR few-shot per balancing.
# Short runs, one after another, niced (the machine is shared). Usage:
#   bash bench/mtl-tables.sh [multifashion|digits|fewshot]...   (default: all three)
# Spoken digits need `parallax data spoken-digits --out $DIGITS` first.
set -uo pipefail
cd "$(dirname "$0")/.."
P=.build/release/parallax
OUT=${OUT:-runs/mtl-tables}
DIGITS=${DIGITS:-/tmp/mtl-data/digits}
METHODS=${METHODS:-"ew uw dwa rlw gls gradnorm pcgrad mgda cagrad graddrop imtl gradvac nash-mtl moco aligned-mtl"}
SGD="--optimizer sgd --base-lr 0.05 --lr-scaling none --momentum 0.9 --weight-decay 0 --warmup-steps 0 --seed 0 --threads 2"
MF="--data multi-fashion --model conv4 --global-batch 64 --max-steps 100 $SGD"
SD="--data spoken-digits --data-dir $DIGITS --tasks word,language,voice,gender --model conv4 --sample-rate 8000 --audio-length 8000 --front-end logmel --n-fft 256 --hop 250 --n-mels 16 --global-batch 32 --epochs 3 $SGD"
run() { echo "== $*"; nice "$P" "$@" 2>&1 | grep -E "^mtl |single-task|error|Δm|^recon: conflicts" ; }
table() {  # name, options
  local name=$1; shift
  run mtl --single-task --run-dir "$OUT/$name/single" "$@"
  for m in $METHODS; do
    run mtl --mtl "$m" --baselines "$OUT/$name/single/baselines.json" --run-dir "$OUT/$name/$m" "$@"
  done
  run mtl --mtl mgda --mgda-on representation --baselines "$OUT/$name/single/baselines.json" --run-dir "$OUT/$name/mgda-ub" "$@"
  # Recon: a conflict search of RECON_STEPS steps, the RECON_LAYERS most conflicting layers
  # task-specific, then the usual training (the base method in both).
  for m in ${RECON_BASES:-ew pcgrad}; do
    run mtl --mtl "$m" --recon-search "${RECON_STEPS:-20}" --recon-layers "${RECON_LAYERS:-2}" \
      --baselines "$OUT/$name/single/baselines.json" --run-dir "$OUT/$name/recon-$m" "$@"
  done
}
fewshot() {
  for m in ${FEWSHOT:-ew uw dwa pcgrad cagrad nash-mtl}; do
    local dir="$OUT/fewshot/$m"
    echo "== mtslvr --mtl $m"
    nice "$P" pretrain --config configs/clmr-digits.yaml --data-dir "$DIGITS" --method mtslvr --model conv4 --adapter parallel \
      --augment-preset mtslvr --mtl "$m" --run-dir "$dir" --threads 2 2>&1 | grep -E "^done|error"
    nice "$P" eval fewshot --checkpoint "$dir/latest" --ways 5 --shots 1 --tasks 300 --threads 2 2>&1 | grep -E "^fewshot|error" | tee "$dir/fewshot.txt"
  done
}
for what in "${@:-multifashion digits fewshot}"; do
  for w in $what; do
    case $w in
      multifashion) table multifashion $MF ;;
      digits) table digits $SD ;;
      fewshot) fewshot ;;
    esac
  done
done
