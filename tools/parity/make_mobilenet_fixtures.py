#!/usr/bin/env python3
"""Generate the MobileNetV2 parity fixtures read by `crates/core-seg/tests/mobilenet_parity.rs`.

Run from the repository root:  /opt/torchvenv/bin/python tools/parity/make_mobilenet_fixtures.py
Writes tests/fixtures/parity/{deeplab_mnv2.safetensors, deeplab_mnv2.json, deeplab_mnv2_os8.safetensors,
deeplab_mnv2_os8.json, deeplab_mnv2_names.json}. Deterministic: fixed torch seeds, CPU only, no downloads.

The reference network is torchvision's own `mobilenet_v2(width_mult=w).features[:18]`, dilated in place the way
DeepLab ports of MobileNetV2 do it (`_nostride_dilate`: in blocks 14-17 (OS 16), or 7-13 and 14-17 (OS 8), the
stride-2 3×3 conv becomes stride 1 with half the stage's dilation, every other 3×3 conv takes the stage's
dilation, padding = dilation), with the DeepLabV3+ decoder of `make_fixtures.py` on top: ASPP on
`features[4:18](c1)`, `reduce` on c1 = `features[0:4](x)`, two 3×3 fuse convs, a 1×1 classifier.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file
from torchvision.models._utils import _make_divisible

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import IGNORE, OUT, DeepLabV3Plus, make_target, randomise_bn, state  # noqa: E402

BUDGET = 1024 * 1024  # the files written here must stay below 1 MiB together
WIDTHS = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # width multipliers of the rounding table


def nostride_dilate(module, dilate):
    """In every 3×3 conv of `module`: stride 2 → stride 1 with dilation dilate/2, otherwise dilation dilate."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            d = dilate // 2 if m.stride == (2, 2) else dilate
            m.stride, m.dilation, m.padding = (1, 1), (d, d), (d, d)


def dilated_features(width_mult, os):
    """torchvision MobileNetV2 `features[0:18]` at output stride `os` (32 = unchanged)."""
    f = torchvision.models.mobilenet_v2(width_mult=width_mult).features[:18]
    if os == 8:
        for i in range(7, 14):
            nostride_dilate(f[i], 2)
        for i in range(14, 18):
            nostride_dilate(f[i], 4)
    elif os == 16:
        for i in range(14, 18):
            nostride_dilate(f[i], 2)
    return f


class Backbone(nn.Module):
    def __init__(self, width_mult, os):
        super().__init__()
        self.features = dilated_features(width_mult, os)

    def forward(self, x):
        c1 = self.features[0:4](x)
        return c1, self.features[4:18](c1)


class DeepLabV3PlusMNV2(DeepLabV3Plus):
    """DeepLabV3+ (UniMatch's decoder, forward of `make_fixtures.DeepLabV3Plus`) on MobileNetV2; names
    `backbone.features.*`, `head.*`, `reduce.*`, `fuse.*`, `classifier.*`."""

    def __init__(self, width_mult, aspp, reduce, fuse, nclass, os=16, rates=(6, 12, 18)):
        nn.Module.__init__(self)
        self.backbone = Backbone(width_mult, os)
        f = self.backbone.features
        self.add_decoder(f[3].conv[-1].num_features, f[17].conv[-1].num_features, aspp, reduce, fuse, nclass, rates)


def config(width_mult, os, aspp, reduce, fuse, nclass, rates):
    return {"backbone": "mobilenet_v2", "width_mult": width_mult, "output_stride": os, "dilations": list(rates),
            "aspp_channels": aspp, "reduce_channels": reduce, "fuse_channels": fuse, "nclass": nclass}


def n_trainable(m):
    return sum(p.numel() for p in m.parameters())


# Tensors whose values after the three SGD steps are stored in full (the others as moments, see `moments`).
FULL_AFTER3 = ["backbone.features.0.0.weight", "backbone.features.0.1.running_var",
               "backbone.features.15.conv.1.0.weight", "backbone.features.17.conv.3.running_mean",
               "head.b1.0.weight", "classifier.weight", "classifier.bias"]


def moments(v):
    """Σ v, Σ v², Σ (i+1)/n · v_i over the flattened tensor (f64): a per-tensor fingerprint that any changed
    element, and any permutation, alters."""
    f = v.double().flatten()
    w = torch.arange(1, f.numel() + 1, dtype=torch.float64) / f.numel()
    return torch.stack([f.sum(), (f * f).sum(), (w * f).sum()])


def randn16(g, *shape):
    """Normal draws rounded to f16 (stored as f16; exact in f32 and f64)."""
    return torch.randn(shape, generator=g).half()


def build_os16(imagenet=None):
    """OS 16, width 0.1: f32 eval logits; train-mode losses of three SGD steps in f64 and the parameters and BN
    buffers after them (moments of every tensor, a few tensors in full). Parameters and images are rounded to
    f16 and stored so (exact in f32 and f64), computed results are stored in f32 (eval) or f64 (training). The
    training crops are large enough (c4 4×3) for batch norm to stay well conditioned: on 2×2 maps the dilated
    depthwise convs see almost only padding, channel variances fall below eps, and rounding differences of
    1e-16 grow to 1e-7 within three steps."""
    w, rates = (0.1, (6, 12, 18)) if imagenet is None else (1.0, (6, 12, 18))
    aspp, reduce, fuse = (8, 8, 16) if imagenet is None else (128, 48, 256)
    torch.manual_seed(10)
    m = DeepLabV3PlusMNV2(w, aspp, reduce, fuse, 5, 16, rates)
    g = torch.Generator().manual_seed(11)
    randomise_bn(m, g)
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    if imagenet is not None:
        # The converted ImageNet encoder as it is (f32, exact in f64); the decoder stays seeded.
        enc = {f"backbone.{k}": v for k, v in load_file(imagenet).items() if int(k.split(".")[1]) < 18}
        missing, unexpected = m.load_state_dict(enc, strict=False)
        assert not unexpected and not any(k.startswith("backbone.") for k in missing), (missing, unexpected)
    keep = (lambda v: v.half()) if imagenet is None else (lambda v: v)
    t = {f"param.{k}": keep(v) for k, v in state(m).items()}
    x = randn16(g, 2, 3, 29, 23)
    t["input"] = x
    x = x.float()
    m.eval()
    with torch.no_grad():
        t["eval_logits"] = m(x)
    m = m.double()
    m.train()
    groups = [{"params": [p for n, p in m.named_parameters() if n.startswith("backbone.")], "lr": 0.01},
              {"params": [p for n, p in m.named_parameters() if not n.startswith("backbone.")], "lr": 0.1}]
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses = []
    for i in range(3):
        h, w_ = (49, 41) if imagenet is None else (97, 81)  # width 1: c4 of 7×6 keeps every BN well conditioned
        img = randn16(g, 2, 3, h, w_)
        msk = make_target(g, 2, h, w_, 5, 0.1).to(torch.uint8)
        t[f"batch{i}.image"], t[f"batch{i}.mask"] = img, msk
        loss = F.cross_entropy(m(img.double()), msk.long(), ignore_index=IGNORE)
        losses.append(loss.detach().reshape(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for i, l in enumerate(losses):
        t[f"train.loss{i}"] = l
    after = state(m)
    t.update({f"after3_moments.{k}": moments(v) for k, v in after.items()})
    t.update({f"after3.{k}": after[k] for k in FULL_AFTER3})
    meta = {"config": config(w, 16, aspp, reduce, fuse, 5, rates), "trainable_parameters": n_trainable(m),
            "losses": [float(l) for l in losses], "eval_logits_absmax": float(t["eval_logits"].abs().max()),
            "sgd": {"momentum": 0.9, "weight_decay": 1e-4, "lr_backbone": 0.01, "lr_head": 0.1}}
    return t, meta, m


def build_os8(os16):
    """OS 8 (ASPP 12/24/36) with the OS-16 model's parameters (`param.*` of deeplab_mnv2), f32: eval logits, the
    train-mode loss and the BN running statistics after that forward; plus the undilated network's c4
    (torchvision's features[:18](x), output stride 32) from the same weights."""
    rates = (12, 24, 36)
    m = DeepLabV3PlusMNV2(0.1, 8, 8, 16, 5, 8, rates)
    m.load_state_dict({k: v.float() for k, v in os16.items()})
    g = torch.Generator().manual_seed(21)
    t = {}
    x = randn16(g, 2, 3, 27, 31)
    t["input"] = x
    x = x.float()
    m.eval()
    plain = Backbone(0.1, 32).eval()
    plain.load_state_dict(m.backbone.state_dict())
    with torch.no_grad():
        t["eval_logits"] = m(x)
        t["os32_c4"] = plain(x)[1]
    m.train()
    msk = make_target(g, 2, 27, 31, 5, 0.1)
    t["train.mask"] = msk.to(torch.uint8)
    with torch.no_grad():
        t["train.loss"] = F.cross_entropy(m(x), msk, ignore_index=IGNORE).reshape(1)
    t.update({f"after_fwd.{k}": v.float() for k, v in state(m).items() if "running" in k})
    return t, {"config": config(0.1, 8, 8, 8, 16, 5, rates), "params_from": "deeplab_mnv2.safetensors",
               "trainable_parameters": n_trainable(m)}


def build_names():
    """Width 1: torchvision's `features.*` names and shapes (with features.18), and DeepLabV3+ MNV2 (ASPP 256,
    reduce 48, fuse 256, 21 classes) names, shapes and trainable parameter count; `_make_divisible(c·w, 8)` for
    torchvision's channel counts at several widths."""
    with torch.device("meta"):
        tv = torchvision.models.mobilenet_v2()
        m = DeepLabV3PlusMNV2(1.0, 256, 48, 256, 21)
    listing = lambda sd, pre: sorted([k, list(v.shape)] for k, v in sd.items()
                                     if k.startswith(pre) and not k.endswith("num_batches_tracked"))
    return {"torchvision_features": listing(tv.state_dict(), "features."),
            "torchvision_features_parameters": n_trainable(tv.features),
            "config": {"backbone": "mobilenet_v2", "aspp_channels": 256, "reduce_channels": 48,
                       "fuse_channels": 256, "nclass": 21},
            "trainable_parameters": n_trainable(m),
            "names": listing(m.state_dict(), ""),
            "make_divisible": [[c * w, _make_divisible(c * w, 8)] for w in WIDTHS
                               for c in (32, 16, 24, 64, 96, 160, 320, 1280 * max(1.0, w))]}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--imagenet", help="converted ImageNet encoder (fetch-weights output): write the OS 16 fixture at "
                    "width 1 with it, into --out only (too large to commit); run the Rust parity tests on it with "
                    "SEMISEG_PARITY_FIXTURES=DIR")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.imagenet:
        t, meta, _ = build_os16(a.imagenet)
        os.makedirs(a.out, exist_ok=True)
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(a.out, "deeplab_mnv2.safetensors"))
        with open(os.path.join(a.out, "deeplab_mnv2.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"ImageNet encoder, width 1: trainable {meta['trainable_parameters']}, losses {meta['losses']}")
        return
    os.makedirs(OUT, exist_ok=True)
    t16, meta16, _ = build_os16()
    start = {k[len("param."):]: v for k, v in t16.items() if k.startswith("param.")}
    written = []
    for name, (t, meta) in [("deeplab_mnv2", (t16, meta16)), ("deeplab_mnv2_os8", build_os8(start))]:
        save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, f"{name}.safetensors"))
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=1)
        written += [f"{name}.safetensors", f"{name}.json"]
        print(f"{name}: trainable {meta['trainable_parameters']}, config {meta['config']}")
    names = build_names()
    with open(os.path.join(OUT, "deeplab_mnv2_names.json"), "w") as f:
        json.dump(names, f)
    written.append("deeplab_mnv2_names.json")
    print(f"DeepLabV3+ MobileNetV2 width 1, ASPP 256, 21 classes: {names['trainable_parameters']} trainable; "
          f"torchvision features: {names['torchvision_features_parameters']}; losses {meta16['losses']}")
    total = 0
    for fn in written:
        size = os.path.getsize(os.path.join(OUT, fn))
        total += size
        print(f"{fn}: {size / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB")
    if total >= BUDGET:
        sys.exit("MobileNetV2 fixtures exceed 1 MiB")


if __name__ == "__main__":
    main()
