#!/usr/bin/env python3
"""PyTorch reference for `itra bench`: training throughput and peak memory of the same models,
optimisers, batch and ITRA-c step on the CPU.

Run by hand (not in CI), from the repository root:

    python3 scripts/bench_torch.py > results/bench_torch.jsonl
    itra bench --torch-json results/bench_torch.jsonl --write docs/benchmarks.md

It prints one JSON line per configuration (model, method, second_batch, images_per_second, ...),
which `itra bench --torch-json` matches against its own rows. Each configuration runs in a child
process (this script with `--one`), so `peak_rss_mib` (ru_maxrss) is that configuration's own.

What matches `itra-repro/src/bench.rs`:
- models: the small CNN (conv3x3(1->32, no bias)+BN+ReLU+maxpool2, conv3x3(32->64, no bias)+BN+
  ReLU+maxpool2, flatten, Linear(3136->256)+ReLU = features, Linear(256->10) = head) at 1x28x28,
  and kuangliu/pytorch-cifar's ResNet-18 at 3x32x32 (its 4x4 average pool is the global pool there);
- optimisers: Adam lr 1e-3 for the small CNN (Table 1), SGD lr 0.1, momentum 0.9, weight decay
  5e-4 for ResNet-18 (Table 2);
- batch 128 for S1 (and S2), generated uint8 images normalised per batch on the host, 10 classes;
- ITRA-c with lambda 0.6: one pooled float64 Gram matrix, median bandwidth over unordered pairs
  (detached), per-class MMD as diag(W^T K W), sqrt(max(., 1e-8)), mean over classes present in
  both batches; S2 full (with gradient), detached, or cached (the previous step's detached H1);
- per step: three scalar read-backs (total, CE, regulariser), as the Rust loop does;
- warm-up, timed steps and repeats per model as `itra bench` (median of the repeats).

Threads: torch.set_num_threads(os.cpu_count()).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = 128
CLASSES = 10
TRAIN_IMAGES = 2560
LAMBDA = 0.6
EPS = 1e-8
SHAPES = {"small-cnn": (1, 28, 28), "resnet18-cifar": (3, 32, 32)}
DEFAULT_CASES = ["baseline", "itra-c:full", "itra-c:detached", "itra-c:cached"]


class SmallCnn(nn.Module):
    def __init__(self, in_channels=1, num_classes=CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward_features(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        return F.relu(self.fc1(torch.flatten(x, 1)))

    def forward_head(self, h):
        return self.fc2(h)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """kuangliu/pytorch-cifar's ResNet18, split into features and head."""

    def __init__(self, num_classes=CLASSES):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, 2, 1)
        self.layer2 = self._make_layer(128, 2, 2)
        self.layer3 = self._make_layer(256, 2, 2)
        self.layer4 = self._make_layer(512, 2, 2)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, blocks, stride):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward_features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.avg_pool2d(out, 4), 1)

    def forward_head(self, h):
        return self.linear(h)


def build(model):
    if model == "small-cnn":
        net = SmallCnn()
        return net, torch.optim.Adam(net.parameters(), lr=1e-3)
    if model == "resnet18-cifar":
        net = ResNet18Cifar()
        return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    raise SystemExit(f"unknown model `{model}`; expected one of {', '.join(SHAPES)}")


def median_of_pairs(sq):
    """Median of the strictly-upper-triangular entries (mean of the middle two for an even count)."""
    n = sq.shape[0]
    rows, cols = torch.triu_indices(n, n, offset=1)
    pairs = sq[rows, cols]
    count = pairs.numel()
    upper = torch.kthvalue(pairs, count // 2 + 1).values
    if count % 2 == 1:
        return upper.item()
    lower = torch.kthvalue(pairs, count // 2).values
    return 0.5 * (lower.item() + upper.item())


def class_conditional_mmd(h1, y1, h2, y2):
    """ITRA-c's matching loss, computed as itra-core does (CONVENTIONS.md)."""
    pooled = torch.cat([h1, h2]).double()
    centred = pooled - pooled.detach().mean(0, keepdim=True)
    norms = centred.square().sum(1, keepdim=True)
    sq = (norms + norms.T - 2.0 * centred @ centred.T).clamp_min(0.0)
    sigma = median_of_pairs(sq.detach())
    if not sigma > 1e-12:
        sigma = 1.0
    kernel = torch.exp(-sq / sigma)
    m1 = h1.shape[0]
    present = [k for k in range(CLASSES) if (y1 == k).any() and (y2 == k).any()]
    weights = torch.zeros(pooled.shape[0], max(len(present), 1), dtype=torch.float64)
    for column, k in enumerate(present):
        in1, in2 = y1 == k, y2 == k
        weights[:m1][in1, column] = 1.0 / in1.sum().item()
        weights[m1:][in2, column] = -1.0 / in2.sum().item()
    mmd_squared = ((kernel @ weights) * weights).sum(0)
    scale = 1.0 / len(present) if present else 0.0
    return (mmd_squared.clamp_min(EPS).sqrt().sum() * scale).to(h1.dtype)


def synthetic(shape, seed=0):
    """Per-class prototypes plus noise, as uint8 (the same kind of data, not the same bytes)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    prototypes = rng.uniform(40, 216, size=(CLASSES, size))
    labels = np.arange(TRAIN_IMAGES) % CLASSES
    images = np.clip(prototypes[labels] + rng.uniform(-150, 150, size=(TRAIN_IMAGES, size)), 0, 255)
    images = torch.from_numpy(images.astype(np.uint8).reshape(TRAIN_IMAGES, *shape))
    as_float = images.double() / 255.0
    mean = as_float.mean(dim=(0, 2, 3))
    std = as_float.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6)
    return images, torch.from_numpy(labels), mean.float(), std.float()


def resident_mib():
    """Current resident memory (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def schedule(model, args):
    small = model == "small-cnn"
    warmup, steps, repeats = {(True, False): (3, 20, 5), (True, True): (1, 5, 2),
                              (False, False): (1, 2, 3), (False, True): (1, 1, 1)}[(small, args.quick)]
    return (args.warmup if args.warmup is not None else warmup,
            max(args.steps if args.steps is not None else steps, 1),
            max(args.repeats if args.repeats is not None else repeats, 1))


def measure(model_name, case, args):
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    method, _, mode = case.partition(":")
    if method == "itra-c" and not mode:
        mode = "full"
    if method not in ("baseline", "itra-c"):
        raise SystemExit(f"unknown method `{method}`; expected baseline or itra-c")
    images, labels, mean, std = synthetic(SHAPES[model_name])
    # What the interpreter, torch's libraries and the data hold before any model exists.
    rss_before_model = resident_mib()
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    model, optim = build(model_name)
    model.train()
    steps_per_epoch = TRAIN_IMAGES // BATCH
    generator = torch.Generator().manual_seed(0)
    state = {"step": 0, "order1": None, "order2": None, "cache": None}

    def batch(order, step):
        index = order[step * BATCH:(step + 1) * BATCH]
        x = (images[index].float() / 255.0 - mean) / std
        return x, labels[index]

    def train_step():
        step = state["step"] % steps_per_epoch
        if step == 0:
            state["order1"] = torch.randperm(TRAIN_IMAGES, generator=generator)
            state["order2"] = torch.randperm(TRAIN_IMAGES, generator=generator)
        x1, y1 = batch(state["order1"], step)
        h1 = model.forward_features(x1)
        logits = model.forward_head(h1)
        ce = F.cross_entropy(logits, y1)
        total, regularizer = ce, None
        if method == "itra-c":
            second = None
            if mode == "full" or mode == "detached":
                x2, y2 = batch(state["order2"], step)
                h2 = model.forward_features(x2)
                second = (h2.detach() if mode == "detached" else h2, y2)
            else:
                second, state["cache"] = state["cache"], (h1.detach(), y1)
            if second is not None:
                regularizer = class_conditional_mmd(h1, y1, *second)
                total = ce + LAMBDA * regularizer
        if not np.isfinite(total.item()):
            raise SystemExit("nan or infinity in the training loss")
        ce.detach().item()
        if regularizer is not None:
            regularizer.detach().item()
        optim.zero_grad(set_to_none=True)
        total.backward()
        optim.step()
        state["step"] += 1

    warmup, steps, repeats = schedule(model_name, args)
    for _ in range(warmup):
        train_step()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            train_step()
        rates.append(steps * BATCH / (time.perf_counter() - started))
    return {
        "model": model_name,
        "method": method,
        "second_batch": mode or None,
        "batch_size": BATCH,
        "warmup": warmup,
        "steps": steps,
        "repeats": rates,
        "images_per_second": statistics.median(rates),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_before_model_mib": rss_before_model,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_after": os.getloadavg()[0],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="small-cnn,resnet18-cifar")
    parser.add_argument("--methods", default=",".join(DEFAULT_CASES))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model, case = args.one.split("/", 1)
        print(json.dumps(measure(model, case, args)), flush=True)
        return
    passthrough = [f"--{name}={value}" for name in ("steps", "warmup", "repeats")
                   if (value := getattr(args, name)) is not None]
    if args.quick:
        passthrough.append("--quick")
    for model in args.models.split(","):
        for case in args.methods.split(","):
            print(f"bench_torch {model} {case} ...", file=sys.stderr, flush=True)
            result = subprocess.run([sys.executable, __file__, "--one", f"{model}/{case}", *passthrough],
                                    stdout=subprocess.PIPE, text=True, check=True)
            line = result.stdout.strip().splitlines()[-1]
            record = json.loads(line)
            print(f"  {record['images_per_second']:.1f} img/s, peak RSS {record['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr, flush=True)
            print(line, flush=True)


if __name__ == "__main__":
    main()
