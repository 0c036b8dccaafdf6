#!/usr/bin/env python3
"""PyTorch reference for `itra bench`: training throughput and peak memory of the same models,
optimisers, batch and ITRA-c step on the CPU.

Run by hand (not in CI), from the repository root, with the same `--models` and `--batch-size` as
the `itra bench` run it is compared with (rows are matched by model, method and second batch only):

    python3 scripts/bench_torch.py > results/bench_torch.jsonl
    itra bench --torch-json results/bench_torch.jsonl --write docs/benchmarks.md

    python3 scripts/bench_torch.py --models resnet18 --batch-size 32 > results/bench_torch_r18.jsonl
    itra bench --models resnet18 --batch-size 32 --torch-json results/bench_torch_r18.jsonl

    python3 scripts/bench_torch.py --check-params   # architectures against `itra models --json`

It prints one JSON line per configuration (model, method, second_batch, images_per_second, ...),
which `itra bench --torch-json` matches against its own rows. Each configuration runs in a child
process (this script with `--one`), so `peak_rss_mib` (ru_maxrss) is that configuration's own.

What matches `itra-repro/src/bench.rs` (and the models of `itra-models`):
- models, written by hand after `itra-models/src/{small_cnn,resnet,vgg,mobilenetv2}.rs`, each at
  its reference input shape (`Arch::reference_input_shape`), 10 classes:
  - `small-cnn` (1x28x28): conv3x3(1->32, no bias)+BN+ReLU+maxpool2, conv3x3(32->64, no bias)+BN+
    ReLU+maxpool2, flatten, Linear(3136->256)+ReLU = features, Linear(256->10) = head;
  - `resnet{18,34,50,101}-cifar` (3x32x32): kuangliu/pytorch-cifar's form, 3x3 stride-1 stem
    without bias, no max-pool; `resnet{18,34,50,101}` (3x224x224): torchvision's form, 7x7
    stride-2 stem + 3x3 stride-2 max-pool. Basic blocks (18, 34) or bottlenecks with the stride
    on the 3x3 convolution (50, 101), bias-free convolutions each followed by BN, 1x1 conv+BN
    projection shortcuts where the stride or width changes, global average pool = features
    (512 or 2048), Linear = head;
  - `vgg13-cifar` (3x32x32): VGG-13 conv stack, each 3x3 convolution *with* bias then BN+ReLU,
    2x2 max-pools, global average pool = 512-d features, Linear(512->10) = head; `vgg13`
    (3x224x224): torchvision's `vgg13_bn`, adaptive 7x7 pool, Linear+ReLU+Dropout twice (the
    4096-d features, after dropout), Linear(4096->10) = head;
  - `mobilenetv2-cifar` (3x32x32): torchvision's MobileNetV2 blocks (no expansion conv when t=1,
    ReLU6, linear bottleneck, residual when stride 1 and widths match) with stride 1 in the stem
    and in the first down-sampling stage (t=6, c=24); `mobilenetv2` (3x224x224): torchvision's
    strides. 1x1 conv to 1280 + BN + ReLU6, global average pool = features, head = Dropout(0.2)
    then Linear(1280->10);
  - initialisation as itra-models (torchvision's scheme): convolutions Kaiming-normal fan-out
    (ReLU gain) with zero bias, BN 1/0, linear layers PyTorch's default for the small CNN and
    ResNets, N(0, 0.01) with zero bias for VGG and MobileNetV2;
  `--check-params` builds every model and compares its trainable parameter count, its forward
  multiply-accumulates per image (convolutions and linear layers, as `itra models` counts them)
  and its feature width with `itra models --json --classes 10 --input <shape>`;
- optimisers (`bench::optimizer_config`): Adam lr 1e-3 for the small CNN (Table 1), SGD lr 0.1,
  momentum 0.9, weight decay 5e-4 for every other model (Table 2);
- batch `--batch-size` (default 128, as `itra bench`) for S1 (and S2), drawn from 2,560 generated
  uint8 images (per-class prototype U(40, 216) plus noise U(-150, 150), clamped, as
  `synthetic:<C>x<H>x<W>:10:2560:10`; the same kind of data, not the same bytes), normalised per
  batch on the host with the dataset's per-channel mean and std, 10 classes;
- ITRA-c with lambda 0.6: one pooled float64 Gram matrix, median bandwidth over unordered pairs
  (detached), per-class MMD as diag(W^T K W), sqrt(max(., 1e-8)), mean over classes present in
  both batches; S2 full (with gradient), detached, or cached (the previous step's detached H1);
- per step: three scalar read-backs (total, CE, regulariser), as the Rust loop does;
- warm-up, timed steps and repeats per model as `itra bench` (the small CNN 3/20/5, every other
  model 1/2/3; with `--quick` 1/5/2 and 1/1/1; median of the repeats).

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

BATCH = 128  # the default of `--batch-size`, as `itra bench`
CLASSES = 10
TRAIN_IMAGES = 2560
LAMBDA = 0.6
EPS = 1e-8
DEFAULT_CASES = ["baseline", "itra-c:full", "itra-c:detached", "itra-c:cached"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def projection(in_planes, out_planes, stride):
    """The shortcut: identity, or conv1x1 (no bias) + BN where the stride or the width changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = projection(in_planes, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 with the stride (ResNet v1.5, as torchvision and itra-models), 1x1 expand x4."""

    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = projection(in_planes, planes * 4, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """itra-models' `ResNet`: ImageNet stem (7x7/2 + max-pool 3x3/2) or CIFAR stem (3x3/1, no
    max-pool), four stages, global average pool (the features) and `fc` (the head)."""

    def __init__(self, block, blocks, cifar, in_channels=3, num_classes=CLASSES):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.in_planes = 64
        self.layer1 = self._make_layer(block, 64, blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, blocks[3], 2)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward_features(self, x):
        out = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return out.mean(dim=(2, 3))

    def forward_head(self, h):
        return self.fc(h)


VGG13_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class Vgg13Bn(nn.Module):
    """itra-models' `Vgg` (VGG-13-BN): 3x3 convolutions with bias, each + BN + ReLU, 2x2 max-pools.
    CIFAR form: global average pool (512-d features), Linear(512, K). ImageNet form (torchvision
    `vgg13_bn`): adaptive 7x7 pool, [Linear(25088, 4096) ReLU Dropout(0.5) Linear(4096, 4096) ReLU
    Dropout(0.5)] = features, Linear(4096, K) = head."""

    def __init__(self, cifar, in_channels=3, num_classes=CLASSES):
        super().__init__()
        layers, channels = [], in_channels
        for entry in VGG13_LAYOUT:
            if entry == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, entry, 3, padding=1, bias=True), nn.BatchNorm2d(entry),
                           nn.ReLU(inplace=True)]
                channels = entry
        self.features = nn.Sequential(*layers)
        if cifar:
            self.avgpool, self.hidden = None, None
            self.head = nn.Linear(channels, num_classes)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.hidden = nn.Sequential(nn.Linear(channels * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5))
            self.head = nn.Linear(4096, num_classes)

    def forward_features(self, x):
        maps = self.features(x)
        if self.avgpool is None:
            return maps.mean(dim=(2, 3))
        return self.hidden(torch.flatten(self.avgpool(maps), 1))

    def forward_head(self, h):
        return self.head(h)


# (expansion t, output channels c, repeats n, stride s of the first block), the paper's Table 2.
MOBILENETV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu6(in_channels, out_channels, kernel, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = in_channels * expand_ratio
        layers = [] if expand_ratio == 1 else [conv_bn_relu6(in_channels, hidden, 1)]
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """itra-models' `MobileNetV2` (width 1): the CIFAR form has stride 1 in the stem and in the
    first down-sampling stage (t=6, c=24), total stride 8; the ImageNet form torchvision's 32."""

    def __init__(self, cifar, in_channels=3, num_classes=CLASSES):
        super().__init__()
        layers = [conv_bn_relu6(in_channels, 32, 3, stride=1 if cifar else 2)]
        channels = 32
        for index, (expand_ratio, out_channels, repeats, stride) in enumerate(MOBILENETV2_STAGES):
            if cifar and index == 1:
                stride = 1
            for repeat in range(repeats):
                layers.append(InvertedResidual(channels, out_channels, stride if repeat == 0 else 1, expand_ratio))
                channels = out_channels
        layers.append(conv_bn_relu6(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward_features(self, x):
        return self.features(x).mean(dim=(2, 3))

    def forward_head(self, h):
        return self.classifier(h)


def init_like_itra(net, normal_linear):
    """itra-models' (torchvision's) initialisation: convolutions Kaiming-normal fan-out with ReLU
    gain and zero bias, BN 1/0, linear layers N(0, 0.01) with zero bias where `normal_linear`,
    else PyTorch's default."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and normal_linear:
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return net


IMAGENET, CIFAR = (3, 224, 224), (3, 32, 32)
# name -> (reference input shape, constructor, linear layers N(0, 0.01)), as `Arch` in itra-models.
ARCHS = {
    "small-cnn": ((1, 28, 28), lambda: SmallCnn(), False),
    "resnet18": (IMAGENET, lambda: ResNet(BasicBlock, [2, 2, 2, 2], cifar=False), False),
    "resnet18-cifar": (CIFAR, lambda: ResNet(BasicBlock, [2, 2, 2, 2], cifar=True), False),
    "resnet34": (IMAGENET, lambda: ResNet(BasicBlock, [3, 4, 6, 3], cifar=False), False),
    "resnet34-cifar": (CIFAR, lambda: ResNet(BasicBlock, [3, 4, 6, 3], cifar=True), False),
    "resnet50": (IMAGENET, lambda: ResNet(Bottleneck, [3, 4, 6, 3], cifar=False), False),
    "resnet50-cifar": (CIFAR, lambda: ResNet(Bottleneck, [3, 4, 6, 3], cifar=True), False),
    "resnet101": (IMAGENET, lambda: ResNet(Bottleneck, [3, 4, 23, 3], cifar=False), False),
    "resnet101-cifar": (CIFAR, lambda: ResNet(Bottleneck, [3, 4, 23, 3], cifar=True), False),
    "vgg13": (IMAGENET, lambda: Vgg13Bn(cifar=False), True),
    "vgg13-cifar": (CIFAR, lambda: Vgg13Bn(cifar=True), True),
    "mobilenetv2": (IMAGENET, lambda: MobileNetV2(cifar=False), True),
    "mobilenetv2-cifar": (CIFAR, lambda: MobileNetV2(cifar=True), True),
}


def arch(model):
    if model not in ARCHS:
        raise SystemExit(f"unknown model `{model}`; expected one of {', '.join(ARCHS)}")
    return ARCHS[model]


def make_model(model):
    _, constructor, normal_linear = arch(model)
    return init_like_itra(constructor(), normal_linear)


def build(model):
    """The model and `bench::optimizer_config`'s optimiser: Adam 1e-3 for the small CNN, SGD 0.1
    with momentum 0.9 and weight decay 5e-4 for the others."""
    net = make_model(model)
    if model == "small-cnn":
        return net, torch.optim.Adam(net.parameters(), lr=1e-3)
    return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


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


def synthetic(shape, seed=0, chunk=64):
    """Per-class prototypes plus noise, as uint8 (the same kind of data, not the same bytes).

    Generated and summarised `chunk` images at a time, so that float64 temporaries of 224x224
    images do not set the child's peak RSS; returns the images, labels and per-channel mean and
    (population) std of the pixels / 255."""
    rng = np.random.default_rng(seed)
    channels = shape[0]
    size = int(np.prod(shape))
    prototypes = rng.uniform(40, 216, size=(CLASSES, size))
    labels = np.arange(TRAIN_IMAGES) % CLASSES
    images = np.empty((TRAIN_IMAGES, size), dtype=np.uint8)
    sums = np.zeros(channels)
    squares = np.zeros(channels)
    for start in range(0, TRAIN_IMAGES, chunk):
        stop = min(start + chunk, TRAIN_IMAGES)
        noisy = prototypes[labels[start:stop]] + rng.uniform(-150, 150, size=(stop - start, size))
        images[start:stop] = np.clip(noisy, 0, 255).astype(np.uint8)
        scaled = images[start:stop].reshape(stop - start, channels, -1) / 255.0
        sums += scaled.sum(axis=(0, 2))
        squares += np.square(scaled).sum(axis=(0, 2))
    count = TRAIN_IMAGES * size // channels
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0)).clip(1e-6)
    return (torch.from_numpy(images.reshape(TRAIN_IMAGES, *shape)), torch.from_numpy(labels),
            torch.from_numpy(mean).float(), torch.from_numpy(std).float())


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
    batch_size = args.batch_size
    images, labels, mean, std = synthetic(arch(model_name)[0])
    # What the interpreter, torch's libraries and the data hold before any model exists.
    rss_before_model = resident_mib()
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    model, optim = build(model_name)
    model.train()
    steps_per_epoch = TRAIN_IMAGES // batch_size
    generator = torch.Generator().manual_seed(0)
    state = {"step": 0, "order1": None, "order2": None, "cache": None}

    def batch(order, step):
        index = order[step * batch_size:(step + 1) * batch_size]
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
        rates.append(steps * batch_size / (time.perf_counter() - started))
    return {
        "model": model_name,
        "method": method,
        "second_batch": mode or None,
        "batch_size": batch_size,
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


def itra_models(itra, shape):
    """`itra models --json --classes 10 --input CxHxW`, by architecture name."""
    command = [itra, "models", "--json", "--classes", str(CLASSES), "--input", "x".join(map(str, shape))]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    return {row["name"]: row for row in json.loads(result.stdout)}


def forward_counts(net, shape):
    """Multiply-accumulates of one forward pass on one image, counted as itra-models' `describe`
    does (convolution and linear weights times output positions; no bias, BN, pooling or
    activation), and the feature width."""
    macs = [0]

    def count(module, _inputs, output):
        positions = output.shape[2] * output.shape[3] if isinstance(module, nn.Conv2d) else 1
        macs[0] += module.weight.numel() * positions

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        features = net.forward_features(torch.zeros(1, *shape))
        net.forward_head(features)
    for hook in hooks:
        hook.remove()
    return macs[0], features.shape[1]


def check_params(models, itra):
    """Compares each model's trainable parameters, MACs and feature width with `itra models`."""
    if not os.path.exists(itra):
        raise SystemExit(f"{itra} not found; build it (cargo build --release) or pass --itra")
    torch.manual_seed(0)
    reference = {}
    failures = 0
    print(f"{'model':<18} {'input':<10} {'params torch':>13} {'params itra':>13} {'MACs torch':>14} "
          f"{'MACs itra':>14} {'feat':>9}  ok")
    for model in models:
        shape = arch(model)[0]
        if shape not in reference:
            reference[shape] = itra_models(itra, shape)
        expected = reference[shape].get(model)
        net = make_model(model)
        params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        macs, feat_dim = forward_counts(net, shape)
        del net
        if expected is None:
            ok = False
            itra_params = itra_macs = itra_feat = "missing"
        else:
            itra_params, itra_macs, itra_feat = expected["params"], expected["macs"], expected["feat_dim"]
            ok = (params, macs, feat_dim) == (itra_params, itra_macs, itra_feat)
        failures += not ok
        print(f"{model:<18} {'x'.join(map(str, shape)):<10} {params:>13,} {itra_params:>13,} {macs:>14,} "
              f"{itra_macs:>14,} {f'{feat_dim}/{itra_feat}':>9}  {'ok' if ok else 'MISMATCH'}", flush=True)
    if failures:
        raise SystemExit(f"{failures} of {len(models)} models differ from `itra models`")
    print(f"all {len(models)} models match `itra models` (trainable parameters, MACs, feature width)")


def main():
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--models", help="comma-separated, as `itra bench --models` (default: "
                        "small-cnn,resnet18-cifar; with --check-params every model)")
    parser.add_argument("--methods", default=",".join(DEFAULT_CASES))
    parser.add_argument("--batch-size", type=int, default=BATCH,
                        help="images per mini-batch, S1 (S2 has as many), as `itra bench --batch-size`")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check-params", action="store_true",
                        help="compare the models with `itra models --json` and exit (non-zero on a mismatch)")
    parser.add_argument("--itra", default=os.path.join(REPO, "target", "release", "itra"),
                        help="the itra executable for --check-params")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.batch_size <= TRAIN_IMAGES:
        raise SystemExit(f"--batch-size must be between 1 and the {TRAIN_IMAGES} generated images")
    if args.check_params:
        check_params(args.models.split(",") if args.models else list(ARCHS), args.itra)
        return
    if args.one:
        model, case = args.one.split("/", 1)
        print(json.dumps(measure(model, case, args)), flush=True)
        return
    models = (args.models or "small-cnn,resnet18-cifar").split(",")
    for model in models:
        arch(model)
    passthrough = [f"--{name.replace('_', '-')}={value}" for name in ("steps", "warmup", "repeats", "batch_size")
                   if (value := getattr(args, name)) is not None]
    if args.quick:
        passthrough.append("--quick")
    for model in models:
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
