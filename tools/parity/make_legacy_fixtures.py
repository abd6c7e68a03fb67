#!/usr/bin/env python3
"""Fixtures for the PyTorch checkpoint readers (`crates/core-seg/tests/torch_files.rs`).

Run from the repository root:  /opt/torchvenv/bin/python tools/parity/make_legacy_fixtures.py
Writes tests/fixtures/weights/:

- mnv2_tiny_legacy.pt         a tiny torchvision MobileNetV2 (width 0.05, last conv 24 channels, 5 classes) with
                              random weights and BN statistics, renamed to torchvision's OLD flat names
                              (`features.N.conv.K.*`) and saved in PyTorch's legacy format
                              (`_use_new_zipfile_serialization=False`), no classifier — the layout of the ImageNet
                              file the project converts. Some tensors are stored as views: `features.0.0.weight`
                              channels-last (non-contiguous), a BN's weight and bias sharing one storage (offset),
                              and one 1×1 conv weight as a transposed, offset window of a larger storage.
- mnv2_tiny_torchvision.pth   the same weights under today's names with the classifier, zip format (what
                              `torch.save(model.state_dict())` writes today).
- mnv2_tiny_expected.safetensors  the same tensors, contiguous, today's names.
- mnv2_tiny.json              `old_names` / `new_names` (file order, paired) and `classifier` names.
- misc_legacy.pt / misc_zip.pth   `{"epoch", "best", "state_dict": {…}, "meta"}` with f64 (transposed), i64, f16,
                              bf16, i32, i16, u8, bool, a 0-d and an empty tensor, and an offset view; the same
                              object in both formats.
- misc_expected.safetensors   those tensors, contiguous (bool as u8).

Deterministic (fixed seed, CPU). The old→new rename is derived here from torchvision's module structure (the
flat index of a layer in an old block is its position among the block's leaf modules, ReLU6s included), so it is
an independent check of the rule written in Rust.
"""
import json
import os

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file
from torchvision.ops.misc import Conv2dNormActivation

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "weights"))


def old_to_new_names(model):
    """{old flat name: today's name} for every `features.*` entry of a torchvision MobileNetV2 state dict."""
    mapping = {}
    for n, block in enumerate(model.features):
        if not hasattr(block, "conv"):  # stem and last layer: conv-BN-ReLU6, same names in both
            for k in block.state_dict():
                mapping[f"features.{n}.{k}"] = f"features.{n}.{k}"
            continue
        flat = 0
        for i, child in enumerate(block.conv):
            leaves = list(child.named_children()) if isinstance(child, nn.Sequential) else [(None, child)]
            for j, leaf in leaves:
                for k in leaf.state_dict():
                    new = f"features.{n}.conv.{i}.{j}.{k}" if j is not None else f"features.{n}.conv.{i}.{k}"
                    mapping[f"features.{n}.conv.{flat}.{k}"] = new
                flat += 1
    return mapping


def tiny_mobilenet_v2(g):
    m = torchvision.models.mobilenet_v2(width_mult=0.05, round_nearest=2)
    last_in = m.features[17].conv[-1].num_features
    m.features[18] = Conv2dNormActivation(last_in, 24, kernel_size=1, activation_layer=nn.ReLU6)
    m.classifier[1] = nn.Linear(24, 5)
    sd = m.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                v.fill_(int(torch.randint(0, 100000, (1,), generator=g)))
            elif k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
            else:
                v.copy_(torch.randn(v.shape, generator=g) * 0.5)
    return m


def as_views(sd):
    """Re-stores some entries as views of other storages, values unchanged."""
    w = sd["features.0.0.weight"]
    sd["features.0.0.weight"] = w.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not sd["features.0.0.weight"].is_contiguous()
    wk, bk = "features.1.conv.1.weight", "features.1.conv.1.bias"
    c = sd[wk].numel()
    shared = torch.cat([sd[wk], sd[bk]])
    sd[wk], sd[bk] = shared[:c], shared[c:]
    pk = "features.2.conv.6.weight"
    o, i = sd[pk].shape[:2]
    big = torch.zeros(i + 1, o)
    big[1:] = sd[pk].reshape(o, i).t()
    sd[pk] = torch.as_strided(big, (o, i, 1, 1), (1, o, 1, 1), o)
    assert not sd[pk].is_contiguous() and sd[pk].storage_offset() == o
    return sd


def misc_object(g):
    f64 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    base = torch.randn(10, generator=g)
    sd = {
        "a.f64_transposed": f64.t(),
        "b.i64": torch.tensor([-(2**40), -1, 0, 7, 2**62], dtype=torch.int64),
        "c.f16": torch.randn(2, 3, generator=g).half(),
        "d.bf16": torch.randn(5, generator=g).bfloat16(),
        "e.i32": torch.tensor([[-5, 6], [2**31 - 1, -(2**31)]], dtype=torch.int32),
        "f.i16": torch.tensor([-300, 300], dtype=torch.int16),
        "g.u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "h.bool": torch.tensor([True, False, True]),
        "i.scalar": torch.tensor(3.25, dtype=torch.float64),
        "j.empty": torch.zeros(0, 3),
        "k.offset_view": base[3:9].view(2, 3),
    }
    obj = {"epoch": 3, "best": 0.5, "state_dict": sd, "meta": {"note": "fixture", "ids": [1, 2]}}
    expected = {k: (v.to(torch.uint8) if v.dtype == torch.bool else v).contiguous().clone() for k, v in sd.items()}
    return obj, expected


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(20240611)
    model = tiny_mobilenet_v2(g)
    new_sd = {k: v.clone() for k, v in model.state_dict().items()}
    mapping = old_to_new_names(model)
    features = [k for k in new_sd if k.startswith("features.")]
    inverse = {v: k for k, v in mapping.items()}
    assert sorted(inverse) == sorted(features), "the rename must cover every features.* entry exactly once"
    old_sd = as_views({inverse[k]: new_sd[k].clone() for k in features})
    assert list(old_sd) == [inverse[k] for k in features]

    def path(name):
        return os.path.join(OUT, name)

    torch.save(old_sd, path("mnv2_tiny_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(model.state_dict(), path("mnv2_tiny_torchvision.pth"))
    save_file({k: v.contiguous() for k, v in new_sd.items()}, path("mnv2_tiny_expected.safetensors"))
    names = {
        "old_names": [inverse[k] for k in features],
        "new_names": features,
        "classifier": [k for k in new_sd if k.startswith("classifier.")],
    }
    with open(path("mnv2_tiny.json"), "w") as f:
        json.dump(names, f, indent=1)
        f.write("\n")

    obj, expected = misc_object(g)
    torch.save(obj, path("misc_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(obj, path("misc_zip.pth"))
    save_file(expected, path("misc_expected.safetensors"))

    # Round trip through PyTorch's own reader: the fixtures say what they claim.
    back = torch.load(path("mnv2_tiny_legacy.pt"), weights_only=True)
    assert all(torch.equal(back[inverse[k]], new_sd[k]) for k in features)
    total = 0
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(path(name))
        total += size
        print(f"{name:36s} {size / 1024:8.1f} KiB")
    print(f"{'total':36s} {total / 1024:8.1f} KiB")
    assert total < 400 * 1024


if __name__ == "__main__":
    main()
