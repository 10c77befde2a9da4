#!/bin/sh
# Figures of issue 3 (bench/SYNC_RESULTS.md). Release build first:
#   swift build -c release --product parallax
set -e
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
P=.build/release/parallax
mpirun -np 2 --bind-to core $P bench allreduce --min-bytes 1048576 --rounds 41 --budget-bytes 67108864 \
  --csv bench/allreduce-2ranks-large.csv | tee bench/allreduce-2ranks-large.txt
$P scale --ranks 1,2 --model conv4 --steps 6 --warmup 2 --batch-per-rank 128 --bucket-mb 0.1 \
  --sync-progress poll --out bench/scale-poll | tee bench/scale-conv4-poll.txt
$P scale --ranks 1,2 --model resnet18 --steps 3 --warmup 1 --batch-per-rank 32 --bucket-mb 4 \
  --sync-progress poll --out bench/scale-poll | tee bench/scale-resnet18-poll.txt
$P scale --ranks 2 --model resnet18 --steps 3 --warmup 1 --batch-per-rank 32 --bucket-mb 4 \
  --sync-progress thread --compare-fused false --out bench/scale-thread | tee bench/scale-resnet18-thread.txt
