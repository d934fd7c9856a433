"""Baselines for the ablations: "vit" (ViT-B/16) and "resnet50", multimodal or single-modality.

As the MMDG paper does for unimodal methods, the chosen modalities' channels are concatenated
(RGB 3 + depth 1 + IR 1) and reduced to 3 channels by a 1x1 conv (`reduce`), which feeds an
ImageNet-shaped backbone with a one-logit head; score = sigmoid(logit) = P(attack).

- `modalities` picks the inputs: ("rgb", "depth", "ir") (default), or a single-modality variant
  such as ("rgb",), ("depth",), ("ir",), or any pair. Missing modalities (present=False) enter as
  zero images.
- `reduce` starts as a pass-through so pretrained weights see familiar input: RGB maps to RGB by
  identity and depth/IR start at zero when RGB is used (their weights still receive gradients);
  without RGB, each depth/IR channel starts spread equally over the three outputs (grey).
- Pretrained backbones from a local file only (models/pretrained.py: safetensors or .pth):
  `build("vit", pretrained="vit_b16.safetensors")` maps a timm (or torchvision) ViT-B/16 state dict
  by key (models/vit.py), `build("resnet50", pretrained="r50.pth")` a torchvision / timm ResNet-50
  one (models/resnet.py); the 1000-class heads are skipped. `model.pretrained_info` then says which
  RGB normalisation the weights expect.
- Presets: "paper" is the standard ViT-B/16 / ResNet-50 at 224; "edge" is ViT-Ti/16 (width 192,
  3 heads, so timm's vit_tiny_patch16 weights fit) and a half-width ResNet-50 at 112.
- `paper_training` is our choice (the same AdamW/cosine recipe as mmFAS), not a published recipe.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_fas.errors import ConfigError
from edge_fas.models.pretrained import load_pretrained
from edge_fas.models.resnet import RESNET50_LAYERS, ResNet
from edge_fas.models.steps import MODALITY_CHANNELS, adamw_optimisers, bce, masked_inputs, merge_config, modality_subset, scores, single_train_step
from edge_fas.models.vit import VisionTransformer, load_timm_vit

ALL = ("rgb", "depth", "ir")
VIT_PRESETS = {
    "paper": dict(input_size=224, modalities=ALL, patch_size=16, width=768, depth=12, heads=12, mlp_ratio=4.0),
    "edge": dict(input_size=112, modalities=ALL, patch_size=16, width=192, depth=12, heads=3, mlp_ratio=4.0),
}
RESNET_PRESETS = {
    "paper": dict(input_size=224, modalities=ALL, width=64, layers=RESNET50_LAYERS),
    "edge": dict(input_size=112, modalities=ALL, width=32, layers=RESNET50_LAYERS),
}
TRAINING = dict(optimiser="AdamW", lr=1e-4, weight_decay=1e-2, schedule="cosine", warmup_fraction=0.1,
                epochs=30, batch_size=64, class_balanced_batches=True, source="edge-fas choice (no published recipe)")


class ChannelReduce(nn.Conv2d):
    """1x1 conv from the concatenated modality channels to 3, initialised as a pass-through."""

    def __init__(self, modalities: tuple[str, ...]):
        super().__init__(sum(MODALITY_CHANNELS[m] for m in modalities), 3, 1)
        with torch.no_grad():
            self.weight.zero_()
            self.bias.zero_()
            c, others = 0, [m for m in modalities if m != "rgb"]
            for m in modalities:
                if m == "rgb":
                    self.weight[:, c : c + 3, 0, 0] = torch.eye(3)
                elif "rgb" not in modalities:
                    self.weight[:, c, 0, 0] = 1.0 / len(others)
                c += MODALITY_CHANNELS[m]


class Baseline(nn.Module):
    """Shared plumbing: modality selection -> reduce -> backbone -> logit."""

    output_names = ("logits", "score")
    supports_accumulation = True  # train_step(..., accumulate=k, apply=...): see the trainer

    def _setup(self, preset: str, presets: dict, overrides: dict):
        cfg = merge_config(self.name, presets, preset, overrides)
        cfg["modalities"] = modality_subset(self.name, cfg["modalities"])
        self.preset, self.config = preset, cfg
        self.input_size = cfg["input_size"]
        self.modalities = cfg["modalities"]
        self.paper_training = dict(TRAINING)
        self.reduce = ChannelReduce(self.modalities)
        return cfg

    def forward(self, rgb, depth, ir, present=None) -> dict:
        x, _ = masked_inputs(rgb, depth, ir, present)
        return scores(self.backbone(self.reduce(torch.cat([x[m] for m in self.modalities], dim=1))))

    def loss(self, batch: dict, out: dict) -> dict:
        b = bce(out["logits"], batch["label"])
        return {"bce": b, "total": b}

    def make_optimisers(self, lr=None, weight_decay=None) -> dict:
        return adamw_optimisers(self, lr, weight_decay)

    def train_step(self, batch: dict, optimisers: dict, scaler=None, accumulate: int = 1, apply: bool = True) -> dict:
        return single_train_step(self, batch, optimisers, scaler, accumulate, apply)


class ViTBaseline(Baseline):
    name = "vit"
    pretrained_layouts = ("timm-vit", "torchvision-vit")

    def __init__(self, preset: str = "paper", pretrained=None, **overrides):
        super().__init__()
        cfg = self._setup(preset, VIT_PRESETS, overrides)
        self.backbone = VisionTransformer(img_size=cfg["input_size"], patch_size=cfg["patch_size"], in_chans=3,
                                          embed_dim=cfg["width"], depth=cfg["depth"], num_heads=cfg["heads"],
                                          mlp_ratio=cfg["mlp_ratio"], num_classes=1)
        if pretrained:
            load_pretrained(self, pretrained)

    def load_pretrained(self, path) -> dict:
        """timm ViT state dict or file (same width/patch) -> backbone, by key; the head stays new.
        models.pretrained.load_pretrained(model, path) also detects the layout and normalisation."""
        return load_timm_vit(self.backbone, path)


class ResNetBaseline(Baseline):
    name = "resnet50"
    pretrained_layouts = ("resnet",)

    def __init__(self, preset: str = "paper", pretrained=None, **overrides):
        super().__init__()
        cfg = self._setup(preset, RESNET_PRESETS, overrides)
        cfg["layers"] = tuple(int(n) for n in cfg["layers"])
        if len(cfg["layers"]) != 4:
            raise ConfigError(f"resnet50: layers needs 4 block counts (ResNet-50: [3, 4, 6, 3]); got {cfg['layers']}")
        self.backbone = ResNet(cfg["layers"], width=cfg["width"], in_chans=3, num_classes=1)
        if pretrained:
            load_pretrained(self, pretrained)

    def load_pretrained(self, path) -> dict:
        """torchvision ResNet-50 state dict -> backbone, by key; the 1000-class fc is skipped."""
        return self.backbone.load_torchvision(path)


def build_vit(preset: str = "paper", **overrides) -> ViTBaseline:
    return ViTBaseline(preset=preset, **overrides)


def build_resnet50(preset: str = "paper", **overrides) -> ResNetBaseline:
    return ResNetBaseline(preset=preset, **overrides)
