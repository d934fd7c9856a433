"""Plain-torch ResNet (bottleneck, v1.5) whose parameter names match torchvision's ResNet-50.

Used by the `resnet50` baseline (models/baselines.py) and, truncated to its first stages, by the
spoof-trace generator's encoders (models/spoof_trace.py).

- Key layout is torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, ..., `layer1.0.downsample.0`,
  `fc`), so a torchvision ResNet-50 state dict loads by name with `load_torchvision(path)`.
- `in_chans` other than 3: the pretrained `conv1` weight is adapted by averaging over its RGB input
  channels and repeating (the usual trick for depth/IR), scaled by 3 / in_chans.
- `width` (stem width, 64 in ResNet-50) and `layers` (3, 4, 6, 3) are options so the edge preset can
  shrink the network; pretrained weights only fit the default shape.
- `num_stages` keeps only layer1..layer{num_stages} (no `fc`); `forward_features` returns the
  stem output and each stage's output, for encoders with skip connections.
- The stride sits on the 3x3 conv of each stage's first block (torchvision's "v1.5").
"""

from __future__ import annotations

import os

import torch
from torch import nn

from edge_fas.errors import ArtifactError

RESNET50_LAYERS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, mid: int, stride: int = 1):
        super().__init__()
        out = mid * self.expansion
        self.conv1 = nn.Conv2d(in_ch, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class ResNet(nn.Module):
    """Bottleneck ResNet; defaults give torchvision's resnet50 (25.6 M parameters with fc)."""

    def __init__(
        self,
        layers=RESNET50_LAYERS,
        width: int = 64,
        in_chans: int = 3,
        num_classes: int = 1000,
        num_stages: int = 4,
    ):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if not 1 <= num_stages <= 4 or len(layers) < num_stages:
            raise ValueError(f"ResNet: num_stages must be 1..4 and layers must list that many blocks; got num_stages={num_stages}, layers={layers}")
        if width < 1 or in_chans < 1 or any(n < 1 for n in layers):
            raise ValueError(f"ResNet: width, in_chans and every layers entry must be >= 1; got width={width}, in_chans={in_chans}, layers={layers}")
        self.in_chans, self.width, self.num_stages, self._layers = in_chans, width, num_stages, layers
        self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        ch = width
        self.stage_channels = []
        for i in range(num_stages):
            mid = width * 2**i
            blocks = [Bottleneck(ch, mid, stride=1 if i == 0 else 2)]
            ch = mid * Bottleneck.expansion
            blocks += [Bottleneck(ch, mid) for _ in range(layers[i] - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(ch)
        self.num_features = ch
        self.fc = nn.Linear(ch, num_classes) if num_classes and num_stages == 4 else None
        self._init_weights()

    def _init_weights(self):
        if self.conv1.weight.is_meta:  # shape-only build (parameter counts): nothing to initialise
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each block: every block starts as the identity (trains faster)
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_features(self, x) -> list[torch.Tensor]:
        """[stem output (stride 4), layer1 (stride 4), layer2 (8), layer3 (16), layer4 (32)][:1+num_stages]."""
        feats = [self.stem(x)]
        for i in range(self.num_stages):
            feats.append(getattr(self, f"layer{i + 1}")(feats[-1]))
        return feats

    def forward(self, x):
        """Pooled features (B, num_features), or class logits when the net has its fc."""
        f = self.forward_features(x)[-1].mean(dim=(2, 3))
        return self.fc(f) if self.fc is not None else f

    def load_torchvision(self, source, strict_fc: bool = False) -> dict:
        """Load a torchvision ResNet state dict (a file path or a dict) by key.

        Keys this net lacks (later stages, fc when absent or of another size) are skipped; conv1 is
        adapted to `in_chans`; a missing BatchNorm `num_batches_tracked` counter (timm's files may
        lack it) keeps its own value. Returns {"loaded": [...], "skipped": [...]}. A missing key, a
        key of another architecture or a shape mismatch in the kept part raises ArtifactError naming
        the source and the key.
        """
        from edge_fas.models.pretrained import read_weights

        sd, name = read_weights(source, "ResNet pretrained weights")
        own = self.state_dict()
        new, loaded = {}, []
        for k, v in own.items():
            if k not in sd:
                if (k.startswith("fc.") and not strict_fc) or k.endswith("num_batches_tracked"):
                    new[k] = v
                    continue
                raise ArtifactError(f"ResNet pretrained weights: {name} lacks key '{k}'; is it a torchvision ResNet-50 state dict with matching layers/width?")
            w = sd[k]
            if k == "conv1.weight" and w.shape[1] != self.in_chans and w.shape[1] == 3:
                w = w.mean(dim=1, keepdim=True).repeat(1, self.in_chans, 1, 1) * (3.0 / self.in_chans)
            if w.shape != v.shape:
                if k.startswith("fc.") and not strict_fc:
                    new[k] = v
                    continue
                raise ArtifactError(f"ResNet pretrained weights: {name} key '{k}' has shape {tuple(w.shape)}, this net needs {tuple(v.shape)}; use the default width/layers with torchvision ResNet-50 weights")
            new[k] = w.to(v.dtype)
            loaded.append(k)
        skipped = sorted(set(sd) - set(loaded))
        later = tuple(f"layer{i}." for i in range(self.num_stages + 1, 5))
        foreign = [k for k in skipped if not k.startswith(("fc.",) + later)]
        if foreign:
            raise ArtifactError(f"ResNet pretrained weights: {name} has key(s) a ResNet of layers {self._layers} does "
                                f"not have ({foreign[:4]}); use torchvision/timm ResNet-50 weights of the same layers")
        self.load_state_dict(new)
        return {"loaded": loaded, "skipped": skipped}


def resnet50(in_chans: int = 3, num_classes: int = 1000, num_stages: int = 4, pretrained=None, **kw) -> ResNet:
    net = ResNet(RESNET50_LAYERS, in_chans=in_chans, num_classes=num_classes, num_stages=num_stages, **kw)
    if pretrained:
        net.load_torchvision(pretrained)
    return net


# ---- ArcFace IResNet (face recognition; the spoof-trace identity loss uses IResNet-18) ----------
# Parameter names follow insightface's recognition/arcface_torch/backbones/iresnet.py so its
# released .pth state dicts load by key.


class IBasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=1e-5)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, eps=1e-5))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace IResNet: 112 x 112 RGB in [-1, 1] -> (B, num_features) embedding."""

    def __init__(self, layers=(2, 2, 2, 2), num_features: int = 512, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        ch = width
        for i, n in enumerate(layers):
            out = width * 2**i
            blocks = [IBasicBlock(ch, out, 2)] + [IBasicBlock(out, out) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            ch = out
        self.bn2 = nn.BatchNorm2d(ch, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(ch * 7 * 7, num_features)  # 112 / 2**4 = 7
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))

    def load_insightface(self, path) -> None:
        """Load an insightface arcface_torch state dict file; ArtifactError naming the file otherwise."""
        if not os.path.isfile(path):
            raise ArtifactError(f"ArcFace weights: {path} does not exist; pass the path of an insightface arcface_torch iresnet .pth")
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        own = self.state_dict()
        missing = sorted(set(own) - set(sd))
        wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
        if missing or wrong:
            raise ArtifactError(f"ArcFace weights: {path} does not fit IResNet (missing {missing[:3]}, wrong shape {wrong[:3]}); "
                                "use an insightface arcface_torch iresnet18 state dict")
        self.load_state_dict({k: sd[k] for k in own})


def iresnet18(weights=None) -> IResNet:
    net = IResNet((2, 2, 2, 2))
    if weights:
        net.load_insightface(weights)
    return net
