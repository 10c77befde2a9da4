#!/usr/bin/env bash
# One quality table for every pretraining method at equal epochs on Fashion-MNIST: each method
# pretrains with the main job's settings (configs/simclr-fmnist.yaml; the autoencoders on conv6,
# which they require, so the config's conv4 width does not apply to them, and with Adam) for EPOCHS epochs on RANKS ranks, then linear probes its frozen features
# (`--probe`: 30 epochs of logistic regression on standardised features, and a weighted kNN
# with k = 20 on the same features). Rows for a random
# encoder of each architecture and for raw pixels come from the same probe reports (the first
# run that has them: a random conv4 row is the plain conv4's, not MT-SLVR's adapted one).
#
# Usage: EPOCHS=1 bash scripts/quality-table.sh [method ...]   (default: every method)
# Writes runs/quality-eEPOCHS/<method>/ (one run directory per method) and prints the table;
# a method whose run directory already has probes.json is not run again (delete it to redo).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${EPOCHS:-1}"
ranks="${RANKS:-2}"
root="runs/quality-e$epochs"
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(simclr simsiam moco byol barlow transform-pred mtslvr ae dae parallel-ae parallel-dae)
bin=.build/release/parallax
[ -x "$bin" ] || bash scripts/setup.sh release
mkdir -p "$root"
for m in "${methods[@]}"; do
  dir="$root/$m"
  [ -f "$dir/probes.json" ] && continue
  extra=()
  # The autoencoders' MSE diverges under the config's SGD at base lr 0.3 (loss inf at step 23,
  # fp32 or bf16): they take Adam at the notebook's lr 1e-3 (peak 5e-4 at batch 128).
  case "$m" in ae | dae | parallel-ae | parallel-dae) extra=(--model conv6 --conv4-width 64 --optimizer adam --base-lr 1e-3) ;; esac
  # MT-SLVR's row is the paper's: residual adapters in parallel (the config's main job runs it
  # with a shared encoder, adapter none, since session 16).
  if [ "$m" = mtslvr ]; then extra=(--adapter parallel); fi
  echo "== $m ($epochs epochs, $ranks ranks)" >&2
  rm -rf "$dir"
  "$bin" launch -n "$ranks" -- pretrain --config configs/simclr-fmnist.yaml --method "$m" \
    --epochs "$epochs" --run-dir "$dir" --probe "${extra[@]}" > "$root/$m.out" 2>&1 || {
    echo "$m failed: see $root/$m.out" >&2
    continue
  }
done

# The table: one row per method (linear probe and weighted kNN, k = 20, on the pooled and the
# pre-pool features), then the baselines once each.
printf '| method | model | linear pooled | linear pre-pool | kNN pooled | kNN pre-pool | final loss | pretraining s |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|\n'
baselines=$(mktemp)
for m in "${methods[@]}"; do
  dir="$root/$m"
  [ -f "$dir/probes.json" ] || { printf '| %s | – | failed | | | | | |\n' "$m"; continue; }
  jq -r --arg m "$m" --slurpfile run "$dir/run.json" '
    def two(x): (x * 100 | round) as $c | "\($c / 100 | floor).\($c % 100 | tostring | if length < 2 then "0" + . else . end)";
    def pct(n): (.probes | map(select(.name == n)) | if length > 0 then two(.[0].accuracy * 100) + " %" else "–" end);
    ($run[0] | if type == "array" then .[0] else . end) as $r
    | "\($m) \($r.model)" as $n
    | "| \($m) | \($r.model) | \(pct("\($n) (pooled)")) | \(pct("\($n) (pre-pool)")) | \(pct("\($n) (pooled) kNN")) | \(pct("\($n) (pre-pool) kNN")) | \($r.finalLoss * 10000 | round / 10000) | \($r.seconds | round) |"
  ' "$dir/probes.json"
  jq -r '.probes[] | select(.name | test("^(random|raw|majority)"))
    | (.name | capture("^(?<n>.*?)( \\((?<l>pooled|pre-pool)\\))?(?<k> kNN)?$")) as $c
    | "\($c.n)\t\($c.l // "pooled")\($c.k // "")\t\(.accuracy)"' "$dir/probes.json" >> "$baselines"
done
# Baseline rows: the first run's value for each (name, layer, probe kind).
awk -F'\t' '
  !seen[$1 FS $2]++ { if (!($1 in order)) { order[$1] = ++n; names[n] = $1 } acc[$1 FS $2] = sprintf("%.2f %%", $3 * 100) }
  function cell(k, l) { return (k FS l) in acc ? acc[k FS l] : "–" }
  END { for (i = 1; i <= n; i++) { k = names[i]
        printf "| %s | | %s | %s | %s | %s | | |\n", k, cell(k, "pooled"), cell(k, "pre-pool"), cell(k, "pooled kNN"), cell(k, "pre-pool kNN") } }' "$baselines"
rm -f "$baselines"
