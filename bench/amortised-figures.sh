#!/usr/bin/env bash
# The README's amortised-invariance table (issue 16), images: pretrain `amortised` (conv4
# conditioned by FiLM on v = (appearance, spatial)) and plain `simclr` (conv4) with the main
# job's settings for EPOCHS epochs on 2 ranks, then `eval amortised` on every image task:
# learned v, accuracy at the learned v, a probe at every corner of [0, 1]^2; the SimCLR
# checkpoint gets the same probe as the baseline. Raw outputs in runs/amortised-eEPOCHS/.
# Usage: EPOCHS=2 LIMIT=20000 bash bench/amortised-figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-2} limit=${LIMIT:-20000}
P=.build/release/parallax
root=runs/amortised-e$epochs
mkdir -p "$root"
for m in amortised simclr; do
  [ -f "$root/$m/run.json" ] && continue
  echo "== pretrain $m ($epochs epochs)" >&2
  "$P" launch -n 2 -- pretrain --config configs/simclr-fmnist.yaml --method "$m" --epochs "$epochs" \
    --run-dir "$root/$m" > "$root/$m.pretrain.out" 2>&1
done
for m in amortised simclr; do
  [ -s "$root/$m.eval.out" ] && continue
  echo "== eval amortised $m" >&2
  "$P" launch -n 2 -- eval amortised --checkpoint "$root/$m/latest" --task class coarse rotation brightness \
    --limit "$limit" > "$root/$m.eval.tmp" 2>&1
  mv "$root/$m.eval.tmp" "$root/$m.eval.out"
done
cat "$root/amortised.eval.out" "$root/simclr.eval.out"
