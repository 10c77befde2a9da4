#!/bin/bash
# Step time of --mtl methods (issue 17): mtslvr --adapter parallel, conv4, global batch 64,
# 12 steps, median of (compute + comm) ms over steps 3–12 from log.jsonl. Needs
# `swift build -c release --product parallax`. NP=2 runs under mpirun; METHODS="ew pcgrad …"
# picks the methods (interleave ew between them on a shared machine).
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NP=${NP:-1}
out=$(mktemp -d)
for mtl in ${METHODS:-ew uw dwa rlw gls gradnorm pcgrad mgda cagrad graddrop imtl gradvac nash-mtl moco aligned-mtl}; do
  d=$out/np$NP-$mtl
  if [ "$NP" = 1 ]; then run=".build/release/parallax"; else run="mpirun -np $NP --oversubscribe --bind-to none .build/release/parallax"; fi
  $run pretrain --method mtslvr --adapter parallel --model conv4 --global-batch 64 --max-steps 12 --warmup-steps 0 \
    --threads 1 --run-dir "$d" --mtl "$mtl" >/dev/null 2>"$d.err" || { echo "$mtl failed"; tail -3 "$d.err"; continue; }
  python3 - "$d" "$mtl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + '/log.jsonl')]
c = [r['compute_ms'] + r['comm_ms'] for r in rows if r['step'] >= 3]
print(f"{sys.argv[2]:12s} step_ms {statistics.median(c):8.1f}  loss {rows[-1]['loss']:.4f}")
PY
done
