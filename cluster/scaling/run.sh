#!/usr/bin/env bash
# Reproduces cluster/scaling/: for each link shape, bring up namespace hosts shaped with tc,
# fit α–β from `bench allreduce` over TCP between them, profile compute on the same hosts
# unshaped, run the validation pretrainings on the shaped hosts and predict 2…1024 nodes.
# Run from the repository root as root after `swift build -c release --product parallax`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=cluster/scaling
common=(--predict --ranks 2,4 --model conv4 --steps 20 --warmup 3 --batch-per-rank 16 --bucket-mb 0.1
        --sweep-min-bytes 4096 --sweep-max-bytes 4194304 --sweep-per-octave 2 --alpha-us 25 --launcher "$PWD/cluster/local-hosts mpirun"
        --out "$out")
# To redo only the predictions from the sweeps already in $out (no hosts needed):
#   .build/release/parallax scale "${common[@]}" --link 1gbit --reuse-sweep --validate false
trap 'cluster/local-hosts down >/dev/null' EXIT
# Bandwidth only (tbf): this machine's kernel has no sch_netem, so no added latency.
# Per rank count the compute profile runs on the same hosts unshaped, right before the
# shaped validation runs (the machine is shared, so both should see the same load).
cluster/local-hosts up 4
for rate in 1gbit 200mbit 50mbit; do
  .build/release/parallax scale "${common[@]}" --link "$rate" \
    --shape-cmd "cluster/local-hosts shape --bandwidth $rate" --unshape-cmd "cluster/local-hosts shape" \
    2>&1 | grep -v '^scale: /' | tee "$out/log-$rate.txt"
done
cluster/local-hosts down
{ echo "| link | ranks | sync | measured step (ms) | predicted (ms) | error | predicted compute / collectives / exposed (ms) |"
  echo "|---|---:|---|---:|---:|---:|---|"
  for f in "$out"/validation-*.md; do tail -n +3 "$f"; done; } >"$out/validation.md"
cat "$out/validation.md"
