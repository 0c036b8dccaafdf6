#!/usr/bin/env python3
"""The idiomatic PyTorch twin of `itra bench --epoch`: one real training epoch on Fashion-MNIST.

What an idiomatic PyTorch user writes, not a transcription of itra's loop:
- the dataset read once from the IDX files and normalised once into one float32 tensor
  `[N, 1, 28, 28]` (the training set's per-channel mean and population std, as itra's
  normalisation), indexed per batch;
- the same network and initialisation as `itra-models` (`bench_torch.py`'s modules: `torch.nn`
  layers, torchvision's init), `torch.optim.Adam(lr=1e-3)`, `F.cross_entropy`;
- `S1` from a fresh `torch.randperm` per epoch, and for ITRA-c (lambda 0.6, the full second
  batch) `S2` from a second, independent permutation; batches of 128, the last partial one
  dropped, as itra's sampler;
- one `loss.item()` per step for the running loss (itra reads three scalars back per step);
- evaluation of the whole test set under `torch.no_grad()` in `eval()` mode, batches of 500.

It has no Figure 1 probe: compare it with `itra bench --epoch --distance-probe off`, or read the
probe's share in itra's table. Each configuration runs in its own process (peak RSS its own).
Output: one JSON line per configuration (`"mode": "epoch"`), for `itra bench --epoch
--torch-json FILE`.

    python3 scripts/bench_torch_epoch.py [--data-dir DIR] [--methods baseline,itra-c:full] > torch-epoch.jsonl

Threads: torch.set_num_threads(os.cpu_count()).
"""

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import LAMBDA, build, class_conditional_mmd  # noqa: E402

BATCH = 128
EVAL_BATCH = 500
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_data_dir():
    """Where itra looks: $ITRA_DATA/fmnist, ~/.cache/itra/fmnist, then Debian's copy."""
    candidates = []
    if os.environ.get("ITRA_DATA"):
        candidates.append(os.path.join(os.environ["ITRA_DATA"], "fmnist"))
    candidates.append(os.path.expanduser("~/.cache/itra/fmnist"))
    candidates.append("/usr/share/datasets/fashion-mnist")
    for directory in candidates:
        if os.path.exists(os.path.join(directory, FILES["train"][0] + ".gz")) or os.path.exists(
                os.path.join(directory, FILES["train"][0])):
            return directory
    raise SystemExit(f"Fashion-MNIST not found in {', '.join(candidates)}; pass --data-dir")


def read_idx(directory, name):
    """An IDX file (gzipped or not) as a numpy array, checked against its header."""
    path = os.path.join(directory, name)
    opener = open
    if not os.path.exists(path):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\0\0" or data[2] != 8:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise SystemExit(f"{path}: {body.size} bytes of data, the header says {shape}")
    return body.reshape(shape)


def load(directory):
    """Both splits, normalised once with the training set's statistics."""
    splits = {split: (read_idx(directory, images), read_idx(directory, labels))
              for split, (images, labels) in FILES.items()}
    train = splits["train"][0].astype(np.float64) / 255.0
    mean, std = train.mean(), train.std()
    out = {}
    for split, (images, labels) in splits.items():
        x = torch.from_numpy(((images.astype(np.float32) / 255.0 - mean) / std).astype(np.float32))
        out[split] = (x.unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64)))
    return out


def measure(model_name, case, args):
    torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(0)
    method, _, mode = case.partition(":")
    if method == "itra-c":
        mode = mode or "full"
        if mode != "full":
            raise SystemExit("the epoch twin measures ITRA-c with the full second batch only")
    elif method != "baseline":
        raise SystemExit(f"unknown method `{method}`; expected baseline or itra-c:full")
    if model_name != "small-cnn":
        raise SystemExit("the epoch twin trains the small CNN on Fashion-MNIST")
    data = load(args.data_dir)
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]
    model, optim = build(model_name)
    n = x_train.shape[0]
    steps = n // args.batch_size
    generator = torch.Generator().manual_seed(0)
    second = torch.Generator().manual_seed(1)
    wall = time.perf_counter()
    for _epoch in range(args.epochs):
        epoch_started = time.perf_counter()
        model.train()
        order1 = torch.randperm(n, generator=generator)
        order2 = torch.randperm(n, generator=second) if method == "itra-c" else None
        running = 0.0
        for step in range(steps):
            index = order1[step * args.batch_size:(step + 1) * args.batch_size]
            x1, y1 = x_train[index], y_train[index]
            h1 = model.forward_features(x1)
            loss = F.cross_entropy(model.forward_head(h1), y1)
            if order2 is not None:
                index2 = order2[step * args.batch_size:(step + 1) * args.batch_size]
                h2 = model.forward_features(x_train[index2])
                loss = loss + LAMBDA * class_conditional_mmd(h1, y1, h2, y_train[index2])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            running += loss.item()
        train_seconds = time.perf_counter() - epoch_started
        evaluating = time.perf_counter()
        model.eval()
        correct, ce = 0, 0.0
        with torch.no_grad():
            for start in range(0, x_test.shape[0], EVAL_BATCH):
                logits = model.forward_head(model.forward_features(x_test[start:start + EVAL_BATCH]))
                labels = y_test[start:start + EVAL_BATCH]
                ce += F.cross_entropy(logits, labels, reduction="sum").item()
                correct += (logits.argmax(1) == labels).sum().item()
        eval_seconds = time.perf_counter() - evaluating
        epoch_seconds = time.perf_counter() - epoch_started
    images = steps * args.batch_size
    return {
        "mode": "epoch",
        "model": model_name,
        "method": method,
        "second_batch": mode or None,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "train_images": images,
        "images_per_second": images / train_seconds,
        "epoch_images_per_second": images / epoch_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_loss": running / steps,
        "test_accuracy": 100.0 * correct / x_test.shape[0],
        "test_ce": ce / x_test.shape[0],
        "wall_seconds": time.perf_counter() - wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_after": os.getloadavg()[0],
    }


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--data-dir", help="the Fashion-MNIST IDX files (default: where itra looks)")
    parser.add_argument("--models", default="small-cnn")
    parser.add_argument("--methods", default="baseline,itra-c:full")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per configuration; the last is reported")
    parser.add_argument("--threads", type=int, help="torch threads (default: os.cpu_count())")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data_dir = args.data_dir or default_data_dir()
    if args.one:
        model, case = args.one.split("/", 1)
        print(json.dumps(measure(model, case, args)), flush=True)
        return
    passthrough = [f"--data-dir={args.data_dir}", f"--batch-size={args.batch_size}", f"--epochs={args.epochs}"]
    if args.threads:
        passthrough.append(f"--threads={args.threads}")
    for model in args.models.split(","):
        for case in args.methods.split(","):
            print(f"bench_torch_epoch {model} {case} ...", file=sys.stderr, flush=True)
            result = subprocess.run([sys.executable, __file__, "--one", f"{model}/{case}", *passthrough],
                                    stdout=subprocess.PIPE, text=True, check=True)
            line = result.stdout.strip().splitlines()[-1]
            record = json.loads(line)
            print(f"  {record['images_per_second']:.0f} img/s training, test accuracy "
                  f"{record['test_accuracy']:.2f}%, peak RSS {record['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr, flush=True)
            print(line, flush=True)


if __name__ == "__main__":
    main()
