#!/usr/bin/env python3
"""Generate the PyTorch parity fixtures read by `crates/core-seg/tests/*parity*.rs`.

Run from the repository root:  /opt/torchvenv/bin/python tools/parity/make_fixtures.py
Writes tests/fixtures/parity/{ops.safetensors, ops.json, deeplab_r18.safetensors, deeplab_r18.json,
deeplab_r50_tv_os8.*, deeplabv3_v1c_os8.*, resnet101_deeplab_names.json}. Deterministic: fixed torch seeds, CPU only, no downloads.

The reference model below is written after UniMatch's `model/semseg/deeplabv3plus.py` and
`model/backbone/resnet.py` (DeepLabV3+ with a deep-stem ResNet, UniMatch parameter names); the ops follow
PyTorch's own functional API.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "parity")
OUT = os.path.normpath(OUT)
D64 = torch.float64
IGNORE = 255


# ----------------------------------------------------------------------------------------------- ops
class Ops:
    def __init__(self):
        self.t = {}
        self.cases = []
        self.g = torch.Generator().manual_seed(1234)

    def randn(self, *shape):
        return torch.randn(tuple(shape), generator=self.g, dtype=D64)

    def add(self, name, op, args, inputs, fn, out32=True, extra=None):
        """inputs: dict name -> f64 tensor (those with requires_grad get a gradient)."""
        leaves = {k: v.clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
        out = fn(**leaves)
        r = self.randn(*out.shape)
        (out * r).sum().backward()
        self.t[f"{name}.out"] = out.detach()
        self.t[f"{name}.R"] = r
        for k, v in leaves.items():
            self.t[f"{name}.{k}"] = v.detach()
            if v.is_floating_point():
                self.t[f"{name}.grad_{k}"] = v.grad.detach()
        if out32:
            with torch.no_grad():
                low = {k: (v.float() if v.is_floating_point() else v) for k, v in inputs.items()}
                self.t[f"{name}.out32"] = fn(**low).float()
        for k, v in (extra or {}).items():
            self.t[f"{name}.{k}"] = v
        self.cases.append({"name": name, "op": op, "args": args, "inputs": list(inputs)})


def make_target(g, n, h, w, k, ignore_frac=0.15):
    t = torch.randint(0, k, (n, h, w), generator=g)
    ign = torch.rand(n, h, w, generator=g) < ignore_frac
    t[ign] = IGNORE
    return t


def ohem_ref(logits, target, thresh, min_kept):
    """TorchSemiSeg ProbOhemCrossEntropy2d (UniMatch `util/ohem.py`), written from its description."""
    b, c, h, w = logits.shape
    tgt = target.reshape(-1).clone()
    valid = tgt.ne(IGNORE)
    tgt = tgt * valid.long()
    num_valid = int(valid.sum())
    prob = F.softmax(logits, dim=1).transpose(0, 1).reshape(c, -1).detach()
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = prob.masked_fill(~valid, 1)
        mask_prob = prob[tgt, torch.arange(len(tgt))]
        threshold = thresh
        if min_kept > 0:
            _, index = mask_prob.sort()
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept = mask_prob.le(threshold)
            tgt = tgt * kept.long()
            valid = valid * kept
    tgt = tgt.masked_fill(~valid, IGNORE).reshape(b, h, w)
    return F.cross_entropy(logits, tgt, ignore_index=IGNORE), int(valid.sum())


def build_ops():
    o = Ops()
    g = o.g
    # Bilinear resize: (name, in shape, out size, align_corners)
    resize_cases = [
        ("resize_up_21_81", (1, 1, 21, 21), (81, 81)),
        ("resize_down_81_21", (1, 1, 81, 81), (21, 21)),
        ("resize_down_7_5", (2, 3, 7, 7), (5, 5)),
        ("resize_up_4x5_6x7", (2, 3, 4, 5), (6, 7)),
        ("resize_mixed_5x8_9x3", (1, 2, 5, 8), (9, 3)),
        ("resize_up_2x2_8x8", (1, 2, 2, 2), (8, 8)),
        ("resize_1x1_3x4", (2, 2, 1, 1), (3, 4)),
    ]
    for name, shp, size in resize_cases:
        for ac in (True, False):
            if name == "resize_down_81_21" and not ac:
                continue  # keep the fixture small; the non-aligned downsample is covered by 7→5
            x = o.randn(*shp)
            o.add(f"{name}_ac{int(ac)}", "resize", {"size": list(size), "align_corners": ac}, {"x": x},
                  lambda x, size=size, ac=ac: F.interpolate(x, size=size, mode="bilinear", align_corners=ac))
    # Max-pool 3x3 s2 p1
    for name, shp in [("maxpool_7x9", (2, 3, 7, 9)), ("maxpool_8x8", (1, 2, 8, 8)),
                      ("maxpool_2x3", (1, 2, 2, 3)), ("maxpool_1x1", (1, 1, 1, 1))]:
        o.add(name, "maxpool", {}, {"x": o.randn(*shp)},
              lambda x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1))
    # Cross-entropy with ignore (mean over valid) and the per-pixel map.
    logits = o.randn(2, 5, 6, 7) * 2
    target = make_target(g, 2, 6, 7, 5)
    o.add("ce_ignore", "ce", {}, {"logits": logits, "target": target},
          lambda logits, target: F.cross_entropy(logits, target, ignore_index=IGNORE))
    o.add("ce_pixel", "ce_pixel", {}, {"logits": logits, "target": target},
          lambda logits, target: F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none"))
    # OHEM: thresh branch, kth branch (confident logits), plain-CE fallback, min_kept = 0.
    lo = o.randn(2, 4, 8, 8) * 2
    tg = make_target(g, 2, 8, 8, 4)
    conf = o.randn(2, 4, 8, 8)
    tg2 = make_target(g, 2, 8, 8, 4)
    conf.scatter_(1, (tg2 % 255 % 4).unsqueeze(1), 6.0)  # most target probabilities ≈ 0.99
    for name, lg, tt, mk in [("ohem_thresh", lo, tg, 10), ("ohem_kth", conf, tg2, 60),
                             ("ohem_fallback", lo, tg, 1000), ("ohem_minkept0", lo, tg, 0)]:
        _, kept = ohem_ref(lg, tt, 0.7, mk)
        o.add(name, "ohem", {"thresh": 0.7, "min_kept": mk}, {"logits": lg, "target": tt},
              lambda logits, target, mk=mk: ohem_ref(logits, target, 0.7, mk)[0],
              extra={"kept": torch.tensor([kept], dtype=torch.int64)})
    # PixelShuffle / PixelUnshuffle.
    o.add("pixel_shuffle", "pixel_shuffle", {"r": 2}, {"x": o.randn(2, 12, 3, 4)},
          lambda x: F.pixel_shuffle(x, 2))
    o.add("pixel_shuffle_r3", "pixel_shuffle", {"r": 3}, {"x": o.randn(1, 18, 2, 3)},
          lambda x: F.pixel_shuffle(x, 3))
    o.add("pixel_unshuffle", "pixel_unshuffle", {"r": 2}, {"x": o.randn(2, 3, 6, 8)},
          lambda x: F.pixel_unshuffle(x, 2))
    # Dropout2d: the mask is drawn by torch and then used as an input (x · mask).
    torch.manual_seed(7)
    mask = F.dropout2d(torch.ones(4, 6, 1, 1, dtype=D64), p=0.5, training=True)
    o.add("dropout2d", "dropout2d", {"p": 0.5}, {"x": o.randn(4, 6, 3, 5), "mask": mask},
          lambda x, mask: x * mask)
    # BatchNorm2d in training mode (batch statistics, running-stat update).
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(1 + 0.3 * o.randn(3))
        bn.bias.copy_(0.2 * o.randn(3))
        bn.running_mean.copy_(0.1 * o.randn(3))
        bn.running_var.copy_(1 + 0.2 * o.randn(3).abs())
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    x = o.randn(4, 3, 5, 6) * 1.5 + 0.3

    def bn_fn(x, weight, bias):
        return F.batch_norm(x, bn.running_mean, bn.running_var, weight, bias, training=True,
                            momentum=0.1, eps=1e-5)
    o.add("bn_train", "bn_train", {}, {"x": x, "weight": bn.weight.detach().clone(), "bias": bn.bias.detach().clone()},
          bn_fn, out32=False)
    # running stats were updated once by the f64 call above
    o.t["bn_train.running_mean0"], o.t["bn_train.running_var0"] = rm0, rv0
    o.t["bn_train.running_mean1"] = bn.running_mean.clone()
    o.t["bn_train.running_var1"] = bn.running_var.clone()
    return o


# --------------------------------------------------------------------------------------------- model
def conv(cin, cout, k, stride=1, dil=1):
    pad = 0 if k == 1 else dil * (k - 1) // 2
    return nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dil, bias=False)


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, dil, down):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, planes, 3, stride, dil), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, 1, dil), nn.BatchNorm2d(planes)
        self.downsample = down

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottle(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, dil, down):
        super().__init__()
        self.conv1, self.bn1 = conv(cin, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, stride, dil), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        self.downsample = down

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """Deep stem (UniMatch) or torchvision 7×7 stem; replace_stride_with_dilation [F, F, T] (OS 16) or
    [F, T, T] (OS 8)."""

    def __init__(self, block, layers, w, deep=True, os=16):
        super().__init__()
        if deep:
            self.conv1 = nn.Sequential(conv(3, w, 3, 2), nn.BatchNorm2d(w), nn.ReLU(),
                                       conv(w, w, 3), nn.BatchNorm2d(w), nn.ReLU(), conv(w, 2 * w, 3))
            self.inplanes = 2 * w
        else:
            self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
            self.inplanes = w
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.dilation = 1
        for i, (n, dilate) in enumerate(zip(layers, [False, False, os == 8, True])):
            setattr(self, f"layer{i + 1}", self._layer(block, w << i, n, 1 if i == 0 else 2, dilate))

    def _layer(self, block, planes, n, stride, dilate):
        prev = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        down = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            down = nn.Sequential(conv(self.inplanes, planes * block.expansion, 1, stride),
                                 nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(self.inplanes, planes, stride, prev, down)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes, 1, self.dilation, None) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        c1 = self.layer1(x)
        c4 = self.layer4(self.layer3(self.layer2(c1)))
        return c1, c4


def cbr(cin, cout, k, dil=1):
    return nn.Sequential(conv(cin, cout, k, 1, dil), nn.BatchNorm2d(cout), nn.ReLU())


class Pool(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return F.interpolate(self.gap(x), x.shape[-2:], mode="bilinear", align_corners=True)


class ASPP(nn.Module):
    def __init__(self, cin, cout, rates):
        super().__init__()
        self.b0 = cbr(cin, cout, 1)
        self.b1, self.b2, self.b3 = (cbr(cin, cout, 3, r) for r in rates)
        self.b4 = Pool(cin, cout)
        self.project = cbr(5 * cout, cout, 1)

    def forward(self, x):
        return self.project(torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, depth, w, aspp, reduce, fuse, nclass, deep=True, os=16, rates=(6, 12, 18)):
        super().__init__()
        block, layers = {18: (Basic, [2, 2, 2, 2]), 34: (Basic, [3, 4, 6, 3]), 50: (Bottle, [3, 4, 6, 3]), 101: (Bottle, [3, 4, 23, 3])}[depth]
        self.backbone = ResNet(block, layers, w, deep, os)
        self.add_decoder(w * block.expansion, 8 * w * block.expansion, aspp, reduce, fuse, nclass, rates)

    def add_decoder(self, low, high, aspp, reduce, fuse, nclass, rates):
        """UniMatch's decoder on c1 (`low` channels) and c4 (`high`): `head` (ASPP), `reduce`, `fuse`, `classifier`."""
        aspp = aspp or high // 8
        self.head = ASPP(high, aspp, rates)
        self.reduce = cbr(low, reduce, 1)
        self.fuse = nn.Sequential(conv(aspp + reduce, fuse, 3), nn.BatchNorm2d(fuse), nn.ReLU(),
                                  conv(fuse, fuse, 3), nn.BatchNorm2d(fuse), nn.ReLU())
        self.classifier = nn.Conv2d(fuse, nclass, 1, bias=True)

    def forward(self, x):
        c1, c4 = self.backbone(x)
        h = F.interpolate(self.head(c4), c1.shape[-2:], mode="bilinear", align_corners=True)
        f = self.fuse(torch.cat([self.reduce(c1), h], 1))
        return F.interpolate(self.classifier(f), x.shape[-2:], mode="bilinear", align_corners=True)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def randomise_bn(m, g):
    """Non-trivial BN parameters and buffers, so eval mode is not the identity."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(1 + 0.2 * torch.randn(c, generator=g, dtype=D64))
                mod.bias.copy_(0.1 * torch.randn(c, generator=g, dtype=D64))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g, dtype=D64))
                mod.running_var.copy_(1 + 0.3 * torch.rand(c, generator=g, dtype=D64))


def build_r50_tv_os8():
    """Forward-only f32 fixture of the paths the R-18 one misses: Bottleneck, torchvision stem, OS 8."""
    cfg = {"backbone": "resnet50", "stem": "torchvision", "base_width": 3, "output_stride": 8,
           "dilations": [12, 24, 36], "aspp_channels": None, "reduce_channels": 8, "fuse_channels": 16,
           "nclass": 3}
    torch.manual_seed(1)
    m = DeepLabV3Plus(50, 3, None, 8, 16, 3, deep=False, os=8, rates=(12, 24, 36))
    g = torch.Generator().manual_seed(5)
    randomise_bn(m, g)
    t = {f"param.{k}": v.float() for k, v in state(m).items()}
    x = torch.randn(2, 3, 40, 40, generator=g)
    t["input"] = x
    m.eval()
    with torch.no_grad():
        t["eval_logits"] = m(x)
    m.train()
    msk = make_target(g, 2, 40, 40, 3, 0.1)
    t["train.mask"] = msk.to(torch.uint8)
    with torch.no_grad():
        t["train.loss"] = F.cross_entropy(m(x), msk, ignore_index=IGNORE).reshape(1)
    t.update({f"after_fwd.{k}": v.float() for k, v in state(m).items() if "running" in k})
    return t, {"config": cfg, "trainable_parameters": sum(p.numel() for p in m.parameters())}


class ConvModule(nn.Module):
    """mmcv ConvModule: conv (no bias) + BN + ReLU, parameter names `conv`, `bn`."""

    def __init__(self, cin, cout, k, dil=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=0 if k == 1 else dil, dilation=dil, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class ResNetV1c(nn.Module):
    """mmseg ResNetV1c (as GuidedMix-Net's official configs build it): deep stem 3→w/2→w/2→w (each BN + ReLU,
    `stem.*`), max-pool, Bottleneck stages with strides (1, 2, 1, 1), dilations (1, 1, 2, 4), contract_dilation
    (first block of a dilated stage at half the dilation), downsample conv1×1(stride) + BN."""

    def __init__(self, layers, w):
        super().__init__()
        self.stem = nn.Sequential(conv(3, w // 2, 3, 2), nn.BatchNorm2d(w // 2), nn.ReLU(),
                                  conv(w // 2, w // 2, 3), nn.BatchNorm2d(w // 2), nn.ReLU(),
                                  conv(w // 2, w, 3), nn.BatchNorm2d(w), nn.ReLU())
        inplanes = w
        for i, (n, stride, dil) in enumerate(zip(layers, (1, 2, 1, 1), (1, 1, 2, 4))):
            planes = w << i
            down = nn.Sequential(conv(inplanes, planes * 4, 1, stride), nn.BatchNorm2d(planes * 4))
            first = dil // 2 if dil > 1 else 1
            blocks = [Bottle(inplanes, planes, stride, first, down)]
            inplanes = planes * 4
            blocks += [Bottle(inplanes, planes, 1, dil, None) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPPHead(nn.Module):
    """mmseg ASPPHead (DeepLabV3): image_pool, aspp_modules (d = 1 is 1×1), bottleneck 3×3, dropout, conv_seg."""

    def __init__(self, cin, ch, nclass, dilations):
        super().__init__()
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(cin, ch, 1))
        self.aspp_modules = nn.ModuleList([ConvModule(cin, ch, 1 if d == 1 else 3, d) for d in dilations])
        self.bottleneck = ConvModule(5 * ch, ch, 3)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(ch, nclass, 1)

    def forward(self, x):
        pool = F.interpolate(self.image_pool(x), x.shape[-2:], mode="bilinear", align_corners=False)
        a = torch.cat([pool] + [m(x) for m in self.aspp_modules], 1)
        return self.conv_seg(self.dropout(self.bottleneck(a)))


class DeepLabV3(nn.Module):
    def __init__(self, w, ch, nclass, dilations):
        super().__init__()
        self.backbone = ResNetV1c([3, 4, 6, 3], w)
        self.decode_head = ASPPHead(32 * w, ch, nclass, dilations)

    def forward(self, x):
        return F.interpolate(self.decode_head(self.backbone(x)), x.shape[-2:], mode="bilinear", align_corners=False)


def build_v3_v1c_os8():
    """Forward-only f32 fixture of GuidedMix's network: DeepLabV3 (mmseg names) on ResNetV1c-50, OS 8 (eval
    logits and the train-mode loss with dropout off; tiny widths to stay within the 5 MiB budget)."""
    cfg = {"backbone": "resnet50", "stem": "v1c", "base_width": 2, "output_stride": 8, "dilations": [2, 3, 4],
           "aspp_channels": 2, "nclass": 3, "head": "deeplabv3"}
    torch.manual_seed(2)
    m = DeepLabV3(2, 2, 3, (1, 2, 3, 4))
    g = torch.Generator().manual_seed(6)
    randomise_bn(m, g)
    t = {f"param.{k}": v.float() for k, v in state(m).items()}
    x = torch.randn(2, 3, 23, 23, generator=g)
    t["input"] = x
    m.eval()
    with torch.no_grad():
        t["eval_logits"] = m(x)
    m.train()
    m.decode_head.dropout.p = 0.0
    msk = make_target(g, 2, 23, 23, 3, 0.1)
    t["train.mask"] = msk.to(torch.uint8)
    with torch.no_grad():
        t["train.loss"] = F.cross_entropy(m(x), msk, ignore_index=IGNORE).reshape(1)
    return t, {"config": cfg, "trainable_parameters": sum(p.numel() for p in m.parameters())}


def build_model():
    cfg = {"backbone": "resnet18", "stem": "deep", "base_width": 8, "output_stride": 16,
           "dilations": [6, 12, 18], "aspp_channels": 16, "reduce_channels": 12, "fuse_channels": 32,
           "nclass": 5}
    torch.manual_seed(0)
    m = DeepLabV3Plus(18, 8, 16, 12, 32, 5).double()
    g = torch.Generator().manual_seed(99)
    randomise_bn(m, g)
    t = {f"param.{k}": v for k, v in state(m).items()}
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=D64)
    t["input"] = x
    m32 = DeepLabV3Plus(18, 8, 16, 12, 32, 5)
    m32.load_state_dict(m.state_dict())
    m32.eval()
    with torch.no_grad():
        t["eval_logits"] = m32(x.float())
    batches = [(torch.randn(2, 3, 32, 32, generator=g, dtype=D64), make_target(g, 2, 32, 32, 5, 0.1).to(torch.uint8))
               for _ in range(3)]
    m.train()
    groups = [{"params": [p for n, p in m.named_parameters() if n.startswith("backbone.")], "lr": 0.01},
              {"params": [p for n, p in m.named_parameters() if not n.startswith("backbone.")], "lr": 0.1}]
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses = []
    for i, (img, msk) in enumerate(batches):
        t[f"batch{i}.image"], t[f"batch{i}.mask"] = img, msk
        loss = F.cross_entropy(m(img), msk.long(), ignore_index=IGNORE)
        losses.append(loss.detach().reshape(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    t["train.fwd_loss"] = losses[0].clone()
    for i, l in enumerate(losses):
        t[f"train.loss{i}"] = l
    t.update({f"after3.{k}": v for k, v in state(m).items()})
    n_train = sum(p.numel() for p in m.parameters())
    cfg_out = dict(config=cfg, trainable_parameters=n_train, losses=[float(l) for l in losses],
                   eval_logits_absmax=float(t["eval_logits"].abs().max()),
                   sgd={"momentum": 0.9, "weight_decay": 1e-4, "lr_backbone": 0.01, "lr_head": 0.1})
    return t, cfg_out


def build_names():
    with torch.device("meta"):
        m = DeepLabV3Plus(101, 64, None, 48, 256, 21)
    names = [[k, list(v.shape)] for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")]
    return {"config": {"backbone": "resnet101", "stem": "deep", "base_width": 64, "output_stride": 16,
                       "nclass": 21},
            "trainable_parameters": sum(p.numel() for p in m.parameters()),
            "names": sorted(names)}


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    o = build_ops()
    save_file({k: v.contiguous() for k, v in o.t.items()}, os.path.join(OUT, "ops.safetensors"))
    with open(os.path.join(OUT, "ops.json"), "w") as f:
        json.dump({"torch": torch.__version__, "cases": o.cases}, f, indent=1)
    t, cfg = build_model()
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "deeplab_r18.safetensors"))
    with open(os.path.join(OUT, "deeplab_r18.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    t, cfg50 = build_r50_tv_os8()
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "deeplab_r50_tv_os8.safetensors"))
    with open(os.path.join(OUT, "deeplab_r50_tv_os8.json"), "w") as f:
        json.dump(cfg50, f, indent=1)
    t, cfg_v3 = build_v3_v1c_os8()
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "deeplabv3_v1c_os8.safetensors"))
    with open(os.path.join(OUT, "deeplabv3_v1c_os8.json"), "w") as f:
        json.dump(cfg_v3, f, indent=1)
    names = build_names()
    with open(os.path.join(OUT, "resnet101_deeplab_names.json"), "w") as f:
        json.dump(names, f)
    total = 0
    for fn in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, fn))
        total += size
        print(f"{fn}: {size / 1024:.1f} KiB")
    print(f"total {total / 1024 / 1024:.2f} MiB; R-101 trainable {names['trainable_parameters']}; "
          f"R-18 trainable {cfg['trainable_parameters']}; losses {cfg['losses']}; "
          f"|eval logits| max {cfg['eval_logits_absmax']:.3f}")
    if total >= 5 * 1024 * 1024:
        sys.exit("fixtures exceed 5 MiB")


if __name__ == "__main__":
    main()
