#!/usr/bin/env python3
"""PyTorch timings of the layers in `crates/bench/benches/mobilenet.rs`: MobileNetV2's depthwise 3x3
convolutions, 1x1 convolutions and batch norm + ReLU6 at DeepLabV3+'s shapes (160^2 crop, output stride 16,
batch 8), f32: forward, then the gradients of the inputs and parameters for an output gradient of ones (as
`y.backward()` on the Rust side).

Prints one line per layer: name and median ms over `--reps` timed runs (after warm-up). Threads:
`--threads` (default 2, as the Rust side's rayon pool on a 2-core machine).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

BATCH = 8
# (channels, size, stride, dilation), (cin, cout, size), (channels, size): as in benches/mobilenet.rs.
DEPTHWISE = [
    (32, 80, 1, 1),
    (96, 80, 2, 1),
    (144, 40, 1, 1),
    (144, 40, 2, 1),
    (192, 20, 1, 1),
    (192, 20, 2, 1),
    (384, 10, 1, 1),
    (576, 10, 1, 1),
    (960, 10, 1, 2),
]
POINTWISE = [(16, 96, 80), (144, 24, 40), (32, 192, 20), (64, 384, 10), (960, 160, 10)]
BN = [(96, 80), (144, 40), (192, 20), (576, 10)]


def timeit(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for ch, s, stride, dil in DEPTHWISE:
        x = torch.randn(BATCH, ch, s, s, requires_grad=True)
        w = (0.3 * torch.randn(ch, 1, 3, 3)).requires_grad_()

        def step():
            y = F.conv2d(x, w, stride=stride, padding=dil, dilation=dil, groups=ch)
            torch.autograd.grad(y, (x, w), torch.ones_like(y))

        print(f"dw3x3-{BATCH}x{ch}x{s}x{s}-s{stride}-d{dil}-fwd+bwd {timeit(step, a.reps):.3f}")
    for cin, cout, s in POINTWISE:
        x = torch.randn(BATCH, cin, s, s, requires_grad=True)
        w = (0.1 * torch.randn(cout, cin, 1, 1)).requires_grad_()

        def step():
            y = F.conv2d(x, w)
            torch.autograd.grad(y, (x, w), torch.ones_like(y))

        print(f"conv1x1-{BATCH}x{cin}to{cout}x{s}x{s}-fwd+bwd {timeit(step, a.reps):.3f}")
    for ch, s in BN:
        x = torch.randn(BATCH, ch, s, s, requires_grad=True)
        bn = torch.nn.BatchNorm2d(ch)

        def step():
            y = F.relu6(bn(x))
            torch.autograd.grad(y, (x, bn.weight, bn.bias), torch.ones_like(y))

        print(f"bn+relu6-{BATCH}x{ch}x{s}x{s}-train-fwd+bwd {timeit(step, a.reps):.3f}")


if __name__ == "__main__":
    main()
