#!/bin/sh
# Issue 7 figure on Fashion-MNIST: contrastive only (SimCLR) / predictive only (transformation
# prediction) / MT-SLVR bn / MT-SLVR parallel; conv4, the same augmentation sampling (MT-SLVR's)
# and schedule for all, then a linear probe on the first LIMIT images of each split.
# Usage: STEPS=40 BATCH=128 LIMIT=5000 bench/mtslvr_figures.sh
set -e
P=${PARALLAX:-.build/release/parallax}
OUT=${OUT:-runs/mtslvr-fig}
STEPS=${STEPS:-40}
BATCH=${BATCH:-128}
LIMIT=${LIMIT:-5000}
THREADS=${THREADS:-2}
mkdir -p $OUT
COMMON="--model conv4 --global-batch $BATCH --max-steps $STEPS --warmup-steps 5 --seed 0 --threads $THREADS --augment-sampling mtslvr --log-every 10"
run() {
  name=$1; shift
  $P pretrain "$@" $COMMON --run-dir $OUT/$name > $OUT/$name.log 2>&1
  $P eval linear --checkpoint $OUT/$name/latest --limit $LIMIT --epochs 10 --threads $THREADS > $OUT/$name.eval 2>&1
  echo "$name: $(grep -h '^done' $OUT/$name.log)"; grep -h '^linear' $OUT/$name.eval
}
run simclr --method simclr
run transform-pred --method transform-pred
run mtslvr-bn --method mtslvr --adapter bn
run mtslvr-parallel --method mtslvr --adapter parallel
