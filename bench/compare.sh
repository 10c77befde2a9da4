#!/usr/bin/env bash
# Runs `parallax bench step` and bench/pytorch_step.py back to back on the same work and
# prints both and the ratio of samples/s. Not part of CI.
#   bench/compare.sh [--install-torch] [--model conv4|resnet18] [--batch B] [--threads T] [--steps S]
#                    [--precision fp32|bf16]
# With --precision bf16: Parallax's bf16 GEMMs against PyTorch under autocast bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
model=conv4 batch=256 threads=1 steps=10 install=0 precision=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --install-torch) install=1 ;;
    --model) model=$2; shift ;;
    --batch) batch=$2; shift ;;
    --threads) threads=$2; shift ;;
    --steps) steps=$2; shift ;;
    --precision) precision=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$precision" in fp32|bf16) ;; *) echo "--precision must be fp32 or bf16, not '$precision'" >&2; exit 2 ;; esac
if [ "$install" = 1 ]; then python3 -m pip install torch; fi
python3 -c "import torch" 2>/dev/null || { echo "torch is not installed (use --install-torch)" >&2; exit 1; }
swift build -c release --product parallax >&2
px=$(.build/release/parallax bench step --model "$model" --batch "$batch" --threads "$threads" --steps "$steps" --precision "$precision")
echo "$px"
pt=$(python3 bench/pytorch_step.py --model "$model" --batch "$batch" --threads "$threads" --steps "$steps" --precision "$precision")
echo "$pt"
a=$(echo "$px" | sed -n 's/.*, \([0-9.]*\) samples\/s.*/\1/p' | head -1)
b=$(echo "$pt" | sed -n 's/.*, \([0-9.]*\) samples\/s.*/\1/p' | head -1)
python3 -c "print(f'ratio Parallax/PyTorch samples/s: {$a / $b:.2f}x ($model, batch $batch, $precision, $threads thread(s))')"
# The ceiling: the step's counted FLOPs at the measured peak of the unit Parallax's GEMMs run on
# (bench step's "measured … peak (P GFLOP/s per thread × T)"), against PyTorch's median step.
f=$(echo "$px" | sed -n 's/.* \([0-9.]*\) GFLOP\/step counted.*/\1/p' | head -1)
p=$(echo "$px" | sed -n 's/.*peak (\([0-9.]*\) GFLOP\/s per thread × \([0-9]*\)).*/\1 * \2/p' | head -1)
t=$(echo "$pt" | sed -n 's/.*median \([0-9.]*\) ms\/step.*/\1/p' | head -1)
if [ -n "$f" ] && [ -n "$p" ] && [ -n "$t" ]; then
  python3 -c "pk = $p; g = $f / ($t / 1000); print(f'PyTorch runs the counted {$f} GFLOP/step at {g:.1f} GFLOP/s = {100 * g / pk:.1f}% of the measured peak ({pk:.1f} GFLOP/s); a step at that peak would be {pk / g:.2f}x PyTorch')"
fi
