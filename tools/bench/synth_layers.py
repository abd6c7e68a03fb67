#!/usr/bin/env python3
"""PyTorch timings of the convolutions in `crates/core-seg/examples/synth_layers.rs` (the CPU-sized synthetic
model: ResNet-18 layout, width 16, output stride 8, ASPP at rates 2/4/6, 64^2 crops, batch 8), same list and
order: per layer the median of `--reps` runs (after 3 warm-up runs) of the forward and of the backward of
`y.sum()` (input and weight gradients), in ms; the last line weights each layer by how often the model runs it.
Threads: `--threads` (default 2, as the Rust side's rayon pool on a 2-core machine). `--batch N` replaces the
batch of every layer (UniMatch runs the encoder at 16 and the decoder at 32).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# (input [N, Cin, H, W], weight [Cout, Cin, k, k], stride, padding, dilation, occurrences): as in synth_layers.rs.
LAYERS = [
    ([8, 3, 64, 64], [16, 3, 3, 3], 2, 1, 1, 1),
    ([8, 16, 32, 32], [16, 16, 3, 3], 1, 1, 1, 1),
    ([8, 16, 32, 32], [32, 16, 3, 3], 1, 1, 1, 1),
    ([8, 16, 16, 16], [16, 16, 3, 3], 1, 1, 1, 3),
    ([8, 32, 8, 8], [32, 32, 3, 3], 1, 1, 1, 3),
    ([8, 64, 8, 8], [64, 64, 3, 3], 1, 2, 2, 2),
    ([8, 128, 8, 8], [128, 128, 3, 3], 1, 4, 4, 2),
    ([8, 128, 8, 8], [64, 128, 3, 3], 1, 6, 6, 1),
    ([8, 320, 8, 8], [64, 320, 1, 1], 1, 0, 1, 1),
    ([8, 88, 16, 16], [64, 88, 3, 3], 1, 1, 1, 1),
    ([8, 64, 16, 16], [64, 64, 3, 3], 1, 1, 1, 1),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    total = 0.0
    print(f"threads {a.threads} (torch), f32, median of {a.reps}")
    for xs, ws, s, p, d, count in LAYERS:
        xs = [a.batch or xs[0]] + xs[1:]
        x = torch.randn(*xs, requires_grad=True)
        w = (torch.randn(*ws) * 0.1).requires_grad_()
        fwd, bwd = [], []
        for i in range(a.reps + 3):
            t0 = time.perf_counter()
            y = F.conv2d(x, w, None, s, p, d)
            t1 = time.perf_counter()
            y.sum().backward()
            t2 = time.perf_counter()
            x.grad, w.grad = None, None
            if i >= 3:
                fwd.append((t1 - t0) * 1e3)
                bwd.append((t2 - t1) * 1e3)
        f, b = statistics.median(fwd), statistics.median(bwd)
        total += (f + b) * count
        print(f"{xs} {ws} s{s} p{p} d{d} x{count}: fwd {f:.3} bwd {b:.3}")
    print(f"weighted total {total:.2} ms")


if __name__ == "__main__":
    main()
