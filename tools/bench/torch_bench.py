#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench --compare-pytorch`: the identical DeepLabV3+ and training step.

Runs one case (JSON from the Rust side: name, backbone, size, batch, kind) and prints one JSON line
{"case", "ms", "peak_mib", "steps", "gpu_mib"}. `--device cuda[:N]` runs on the GPU (cudnn.benchmark on, a
synchronisation after every step, gpu_mib = torch.cuda.max_memory_reserved); `--precision bf16` runs the
step under torch.autocast(bfloat16). The model is the parity reference of tools/parity/make_fixtures.py
(UniMatch's DeepLabV3+, deep stem, OS 16, ASPP c4/8, 48-ch reduce, 256-ch fuse, 21 classes); the step is
forward, cross-entropy (ignore 255), backward and SGD (momentum 0.9, wd 1e-4, backbone ×1 / head ×10), or
UniMatch's step (eval-mode mix prediction, CutMix, one FP pass over cat(x_l, x_w), one pass over both
strong views), exactly as `core_seg::frameworks::UniMatch`. Threads: $RAYON_NUM_THREADS, else the number of
physical cores, as Candle. Install torch with `pip install torch numpy safetensors`.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "parity"))
from make_fixtures import DeepLabV3Plus  # noqa: E402
from make_mobilenet_fixtures import DeepLabV3PlusMNV2  # noqa: E402


def physical_cores():
    try:
        ids = set()
        with open("/proc/cpuinfo") as f:
            phys = core = None
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    ids.add((phys, core))
        return max(1, len(ids))
    except OSError:
        return os.cpu_count() or 1


def fp_forward(model, x):
    """UniMatch's need_fp: decoder on cat(c, Dropout2d(c)) for c1 and c4; returns (clean, perturbed) logits."""
    c1, c4 = model.backbone(x)
    c1 = torch.cat([c1, F.dropout2d(c1, 0.5, True)])
    c4 = torch.cat([c4, F.dropout2d(c4, 0.5, True)])
    h = F.interpolate(model.head(c4), c1.shape[-2:], mode="bilinear", align_corners=True)
    f = model.fuse(torch.cat([model.reduce(c1), h], 1))
    out = F.interpolate(model.classifier(f), x.shape[-2:], mode="bilinear", align_corners=True)
    return out.chunk(2)


def unsup(logits, y, conf, ign, tau=0.95):
    ce = F.cross_entropy(logits, y, reduction="none")
    valid = (ign != 255).float()
    return (ce * (conf >= tau).float() * valid).sum() / valid.sum().clamp(min=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()
    dev = torch.device("cuda:0" if a.device in ("cuda", "gpu") else a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    case = json.loads(a.case)
    torch.set_num_threads(int(os.environ.get("RAYON_NUM_THREADS", physical_cores())))
    torch.manual_seed(0)
    if case["backbone"] == "mobilenet_v2":  # width 1, OS 16, ASPP 128 (crates/bench/src/lib.rs)
        nclass = 21
        model = DeepLabV3PlusMNV2(1.0, 128, 48, 256, nclass).to(dev)
    elif case.get("cpu_sized"):  # configs/synthetic.toml: width 16, OS 8, ASPP 64 at rates 2/4/6, 6 classes
        nclass = 6
        model = DeepLabV3Plus(int(case["backbone"].replace("resnet", "")), 16, 64, 24, 64, nclass, os=8,
                              rates=(2, 4, 6)).to(dev)
    else:
        nclass = 21
        model = DeepLabV3Plus(int(case["backbone"].replace("resnet", "")), 64, None, 48, 256, nclass).to(dev)
    b, s, wd = case["batch"], case["size"], case.get("width") or case["size"]
    g = torch.Generator().manual_seed(1)
    img = lambda: torch.randn(b, 3, s, wd, generator=g)  # noqa: E731
    x, y = img().to(dev), torch.randint(0, nclass, (b, s, wd), generator=g).to(dev)
    box = (torch.arange(wd).view(1, 1, wd) < wd // 2).expand(b, s, wd).to(dev)
    u = {k: img().to(dev) for k in ("w", "s1", "s2")}
    m = {k: img().to(dev) for k in ("w", "s1", "s2")}
    ign = torch.zeros(b, s, wd, dtype=torch.long, device=dev)
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")  # noqa: E731
    bb = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.SGD([{"params": bb, "lr": 0.01}, {"params": head, "lr": 0.1}], momentum=0.9, weight_decay=1e-4)

    def step():
        with autocast():
            loss = forward_loss()
        if loss is None:
            return
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward_loss():
        if case["kind"] == "eval":
            model.eval()
            with torch.no_grad():
                model(x).argmax(1)
            return None
        model.train()
        if case["kind"] == "supervised":
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        else:
            with torch.no_grad():
                model.eval()
                pm = model(m["w"]).softmax(1)
                model.train()
                conf_m, y_m = pm.max(1)
            bx = box.unsqueeze(1).expand(b, 3, s, wd)
            xs1 = torch.where(bx, m["s1"], u["s1"])
            xs2 = torch.where(bx, m["s2"], u["s2"])
            p, pfp = fp_forward(model, torch.cat([x, u["w"]]))
            px, pw = p.split([b, b])
            ps1, ps2 = model(torch.cat([xs1, xs2])).chunk(2)
            pw = pw.detach().softmax(1)
            conf_w, y_w = pw.max(1)
            y1, c1 = torch.where(box, y_m, y_w), torch.where(box, conf_m, conf_w)
            lx = F.cross_entropy(px, y, ignore_index=255)
            ls1 = unsup(ps1, y1, c1, ign)
            ls2 = unsup(ps2, y1, c1, ign)
            lfp = unsup(pfp[b:], y_w, conf_w, ign)
            loss = (lx + 0.25 * ls1 + 0.25 * ls2 + 0.5 * lfp) / 2
        return loss

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(dev)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu = torch.cuda.max_memory_reserved(dev) / 2**20 if cuda else None
    print(json.dumps({"case": case["name"], "ms": sum(times) / len(times), "peak_mib": peak, "steps": a.steps,
                      "gpu_mib": gpu}))


if __name__ == "__main__":
    main()
