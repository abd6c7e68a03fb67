#!/usr/bin/env python3
"""DeepLabV3+ on the ImageNet MobileNetV2: eval logits of PyTorch against `cargo xtask forward`.

Run from the repository root, after `cargo xtask fetch-weights mobilenet_v2` and `cargo build --release -p xtask`:

    /opt/torchvenv/bin/python tools/parity/check_deeplab_imagenet.py \
        [--converted ~/.cache/semiseg/mobilenet_v2.safetensors] [--tol 1e-4]

The encoder is the converted ImageNet file (the Rust conversion, whose tensors `check_mobilenet_imagenet.py`
compares with torchvision's); the decoder (OS 16, ASPP 128, 11 classes, the recipes' settings) is seeded with
non-trivial batch-norm statistics. Both sides run the same weights on a seeded 1×3×180×240 input (CamVid at half
resolution); the script prints max |logit difference| and exits non-zero above `--tol`. Nothing is written to the
repository.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import randomise_bn, state  # noqa: E402
from make_mobilenet_fixtures import DeepLabV3PlusMNV2  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    default = os.path.join(os.environ.get("SEMISEG_CACHE", os.path.expanduser("~/.cache/semiseg")), "mobilenet_v2.safetensors")
    ap.add_argument("--converted", default=default)
    ap.add_argument("--xtask", default=os.path.join(ROOT, "target", "release", "xtask"))
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(20261203)
    model = DeepLabV3PlusMNV2(1.0, 128, 48, 256, 11, os=16)
    for m in (model.head, model.reduce, model.fuse):
        randomise_bn(m, g)
    encoder = {f"backbone.{k}": v for k, v in load_file(a.converted).items() if int(k.split(".")[1]) < 18}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    assert not unexpected and not any(k.startswith("backbone.") for k in missing), (missing, unexpected)
    model.eval()
    x = torch.randn(1, 3, 180, 240, generator=g)
    with torch.no_grad():
        ref = model(x)

    with tempfile.TemporaryDirectory() as d:
        w, i, o = (os.path.join(d, n) for n in ("weights.safetensors", "input.safetensors", "logits.safetensors"))
        save_file({k: v.contiguous() for k, v in state(model).items()}, w)
        save_file({"input": x.contiguous()}, i)
        cmd = [a.xtask, "forward", "--backbone", "mobilenet_v2", "--output-stride", "16", "--classes", "11",
               "--aspp-channels", "128", "--weights", w, "--input", i, "--output", o]
        subprocess.run(cmd, check=True)
        ours = load_file(o)["logits"]
    diff = (ours.double() - ref.double()).abs().max().item()
    print(f"DeepLabV3+ MobileNetV2 (ImageNet encoder {a.converted}), 1×3×180×240, OS 16, ASPP 128: "
          f"max |logit difference| {diff:.3e} (logits mean |x| {ref.abs().mean():.3f}); tolerance {a.tol:g}")
    if not diff <= a.tol:
        sys.exit(1)


if __name__ == "__main__":
    main()
