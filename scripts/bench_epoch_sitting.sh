#!/usr/bin/env bash
# One sitting of the real-epoch comparison in docs/benchmarks.md ("The real epoch"): the small
# CNN's FMNIST epoch against the idiomatic PyTorch twin, one method at a time, PyTorch and ours
# alternating in $PAIRS pairs (the machine's speed drifts within minutes, so every ratio is taken
# between neighbours), then CIFAR ResNet-18's step the same way ($RESNET_PAIRS pairs). Run from the repository root after
# `cargo build --release -p itra-repro`, with FMNIST installed; writes JSON lines, the tables and
# `sitting.log` (the order, with load averages) into $OUT. About 3 minutes per baseline pair and 4
# per ITRA-c pair on 2 cores. Nothing else should run meanwhile.
# $ITRA is one binary, or several as `tag=path` words (`ITRA="avx2=/tmp/a v4=/tmp/b"`): each
# round then runs PyTorch and every binary in turn, writing `ours-<tag>_*` files.
set -euo pipefail
OUT=${OUT:-results/bench/epoch}
ITRA=${ITRA:-target/release/itra}
binaries=()
for word in $ITRA; do
  case $word in *=*) binaries+=("$word") ;; *) binaries+=("ours=$word") ;; esac
done
# The files of a lone binary keep their historical names (`ours_*`).
prefix() { if [ "${#binaries[@]}" -eq 1 ]; then echo ours; else echo "ours-$1"; fi; }
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
    for binary in "${binaries[@]}"; do
      name=$(prefix "${binary%%=*}")
      log "$name epoch $method $i"
      "${binary#*=}" bench --epoch --models small-cnn --methods "$method" --distance-probe off \
        --torch-json "$OUT/torch_${tag}_$i.jsonl" --json "$OUT/${name}_${tag}_$i.jsonl" > "$OUT/${name}_${tag}_$i.md"
    done
  done
done
for i in $(seq "$RESNET_PAIRS"); do
  log "torch step resnet18-cifar $i"
  python3 scripts/bench_torch.py --models resnet18-cifar --methods baseline,itra-c:full > "$OUT/torch_step_resnet18_$i.jsonl"
  for binary in "${binaries[@]}"; do
    name=$(prefix "${binary%%=*}")
    log "$name step resnet18-cifar $i"
    "${binary#*=}" bench --models resnet18-cifar --methods baseline,itra-c:full \
      --torch-json "$OUT/torch_step_resnet18_$i.jsonl" --json "$OUT/${name}_step_resnet18_$i.jsonl" > "$OUT/${name}_step_resnet18_$i.md"
  done
done
log "end"
