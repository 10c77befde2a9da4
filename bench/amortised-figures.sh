#!/usr/bin/env bash
# The README's amortised-invariance table (issue 16), images: pretrain `amortised` (conv4
# conditioned by FiLM on v = (appearance, spatial)) with SimCLR's and with MoCo-v2's objective,
# and plain `simclr` and `moco` (conv4) as baselines, with the main
# job's settings for EPOCHS epochs on 2 ranks, then `eval amortised` on every image task:
# learned v, accuracy at the learned v, a probe at every corner of [0, 1]^2; the SimCLR
# checkpoint gets the same probe as the baseline. Raw outputs in runs/amortised-eEPOCHS/.
# Audio (when DIGITS names a `parallax data spoken-digits` corpus): the same on conv4 over
# 16×33 log-mel spectrograms, v = (spectral, temporal), AUDIO_EPOCHS epochs of global batch 32,
# the SimCLR baseline with the MT-SLVR augmentation set (v = 1's set minus the filter), tasks
# word, language, voice, gender. Raw outputs in runs/amortised-audio-eAUDIO_EPOCHS/.
# Usage: EPOCHS=2 LIMIT=20000 [DIGITS=DIR AUDIO_EPOCHS=4] bash bench/amortised-figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-2} limit=${LIMIT:-20000}
P=.build/release/parallax
root=runs/amortised-e$epochs
mkdir -p "$root"
# run name → pretrain flags
method_flags() {
  case $1 in
    amortised-moco) echo "--method amortised --amortised-objective moco" ;;
    *) echo "--method $1" ;;
  esac
}
for m in amortised amortised-moco simclr moco; do
  [ -f "$root/$m/run.json" ] && continue
  echo "== pretrain $m ($epochs epochs)" >&2
  # shellcheck disable=SC2046
  "$P" launch -n 2 -- pretrain --config configs/simclr-fmnist.yaml $(method_flags "$m") --epochs "$epochs" \
    --run-dir "$root/$m" > "$root/$m.pretrain.out" 2>&1
done
for m in amortised amortised-moco simclr moco; do
  [ -s "$root/$m.eval.out" ] && continue
  echo "== eval amortised $m" >&2
  "$P" launch -n 2 -- eval amortised --checkpoint "$root/$m/latest" --task class coarse rotation brightness \
    --limit "$limit" > "$root/$m.eval.tmp" 2>&1
  mv "$root/$m.eval.tmp" "$root/$m.eval.out"
done
cat "$root/amortised.eval.out" "$root/amortised-moco.eval.out" "$root/simclr.eval.out" "$root/moco.eval.out"
[ -n "${DIGITS:-}" ] || exit 0
aepochs=${AUDIO_EPOCHS:-4}
aroot=runs/amortised-audio-e$aepochs
mkdir -p "$aroot"
audio=(--data spoken-digits --data-dir "$DIGITS" --model conv4 --sample-rate 8000 --audio-length 8000 --front-end logmel
  --n-fft 256 --hop 250 --n-mels 16 --global-batch 32 --epochs "$aepochs" --optimizer sgd --base-lr 0.05
  --lr-scaling none --momentum 0.9 --weight-decay 0 --warmup-steps 10 --seed 0)
for m in amortised simclr; do
  [ -f "$aroot/$m/run.json" ] && continue
  extra=()
  [ "$m" = simclr ] && extra=(--augment-preset mtslvr)
  echo "== pretrain $m on spoken digits ($aepochs epochs)" >&2
  "$P" launch -n 2 -- pretrain --method "$m" "${audio[@]}" "${extra[@]}" --run-dir "$aroot/$m" > "$aroot/$m.pretrain.out" 2>&1
done
for m in amortised simclr; do
  [ -s "$aroot/$m.eval.out" ] && continue
  echo "== eval amortised $m (audio)" >&2
  "$P" launch -n 2 -- eval amortised --checkpoint "$aroot/$m/latest" --labels word language voice gender \
    > "$aroot/$m.eval.tmp" 2>&1
  mv "$aroot/$m.eval.tmp" "$aroot/$m.eval.out"
done
cat "$aroot/amortised.eval.out" "$aroot/simclr.eval.out"
