#!/usr/bin/env bash
# One sitting of the real-epoch comparison in docs/benchmarks.md ("The real epoch"): the small
# CNN's FMNIST epoch against the idiomatic PyTorch twin, one method at a time, PyTorch and ours
# alternating in $PAIRS pairs (the machine's speed drifts within minutes, so every ratio is taken
# between neighbours), then CIFAR ResNet-18's step the same way ($RESNET_PAIRS pairs). Run from the repository root after
# `cargo build --release -p itra-repro`, with FMNIST installed; writes JSON lines, the tables and
# `sitting.log` (the order, with load averages) into $OUT. About 3 minutes per baseline pair and 4
# per ITRA-c pair on 2 cores. Nothing else should run meanwhile.
set -euo pipefail
OUT=${OUT:-results/bench/epoch}
ITRA=${ITRA:-target/release/itra}
PAIRS=${PAIRS:-4}
RESNET_PAIRS=${RESNET_PAIRS:-2}
mkdir -p "$OUT"
log() { echo "$1 $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/sitting.log"; }
log "start"
for method in baseline itra-c:full; do
  tag=${method%%:*}
  for i in $(seq "$PAIRS"); do
    log "torch epoch $method $i"
    python3 scripts/bench_torch_epoch.py --methods "$method" > "$OUT/torch_${tag}_$i.jsonl"
    log "ours epoch $method $i"
    "$ITRA" bench --epoch --models small-cnn --methods "$method" --distance-probe off \
      --torch-json "$OUT/torch_${tag}_$i.jsonl" --json "$OUT/ours_${tag}_$i.jsonl" > "$OUT/ours_${tag}_$i.md"
  done
done
for i in $(seq "$RESNET_PAIRS"); do
  log "torch step resnet18-cifar $i"
  python3 scripts/bench_torch.py --models resnet18-cifar --methods baseline,itra-c:full > "$OUT/torch_step_resnet18_$i.jsonl"
  log "ours step resnet18-cifar $i"
  "$ITRA" bench --models resnet18-cifar --methods baseline,itra-c:full \
    --torch-json "$OUT/torch_step_resnet18_$i.jsonl" --json "$OUT/ours_step_resnet18_$i.jsonl" > "$OUT/ours_step_resnet18_$i.md"
done
log "end"
