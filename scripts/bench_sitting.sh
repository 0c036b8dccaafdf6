#!/usr/bin/env bash
# One benchmark sitting for docs/benchmarks.md: PyTorch and `itra bench` on the same quiet
# machine, one after the other, plus the kernel and allocator ablations. Run from the repository
# root after `cargo build --release -p itra-repro`; writes JSON lines into $OUT (default
# results/bench). Takes about 30 minutes on 2 cores. Nothing else should run meanwhile.
set -euo pipefail
OUT=${OUT:-results/bench}
ITRA=${ITRA:-target/release/itra}
mkdir -p "$OUT"
echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg)" | tee "$OUT/sitting.log"

# The main table: small CNN and CIFAR ResNet-18, baseline and ITRA-c in every second-batch mode.
python3 scripts/bench_torch.py > "$OUT/torch_main.jsonl"
"$ITRA" bench --torch-json "$OUT/torch_main.jsonl" --json "$OUT/ours_main.jsonl" | tee "$OUT/ours_main.md"

# Each change on its own: Burn's operations, then our kernels added one at a time, then the
# loss's tensor form, then the allocator setting undone (mimalloc's default purge delay of one
# second).
for kernels in burn conv2d conv2d,batch_norm all; do
  ITRA_KERNELS=$kernels "$ITRA" bench --models small-cnn,resnet18-cifar --methods baseline,itra-c:cached \
    --json "$OUT/ablation_${kernels//,/+}.jsonl" > /dev/null
done
# The loss's tensor form instead of the fused CPU operation (ITRA-c cached and full).
"$ITRA" bench --models small-cnn,resnet18-cifar --methods itra-c:cached,itra-c:full --mmd-form tensor \
  --json "$OUT/ablation_mmd_tensor.jsonl" > /dev/null
MIMALLOC_PURGE_DELAY=1000 "$ITRA" bench --models small-cnn,resnet18-cifar --methods baseline,itra-c:cached \
  --json "$OUT/ablation_purge1000.jsonl" > /dev/null

# Every CIFAR form, and ResNet-18 at 224x224.
M=resnet34-cifar,resnet50-cifar,resnet101-cifar,vgg13-cifar,mobilenetv2-cifar
python3 scripts/bench_torch.py --models $M --methods baseline --repeats 2 > "$OUT/torch_sweep.jsonl"
"$ITRA" bench --models $M --methods baseline --repeats 2 --torch-json "$OUT/torch_sweep.jsonl" \
  --json "$OUT/ours_sweep.jsonl" > /dev/null
python3 scripts/bench_torch.py --models resnet18 --methods baseline,itra-c:cached --batch-size 32 > "$OUT/torch_224.jsonl"
"$ITRA" bench --models resnet18 --methods baseline,itra-c:cached --batch-size 32 \
  --torch-json "$OUT/torch_224.jsonl" --json "$OUT/ours_224.jsonl" > /dev/null
echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT/sitting.log"
