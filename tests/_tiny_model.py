"""A tiny stand-in with helper A's model interface, for runtime tests that must not wait on real models."""

import torch
from torch import nn


class Tiny(nn.Module):
    name, preset, input_size = "tiny", "edge", 32
    config = {"width": 4}

    def __init__(self, trace=False):
        super().__init__()
        self.enc = nn.ModuleList(nn.Conv2d(c, 4, 3, stride=4) for c in (3, 1, 1))
        self.head = nn.Linear(12, 1)
        self.trace = nn.Conv2d(4, 1, 1) if trace else None

    def forward(self, rgb, depth, ir, present=None):
        if present is None:
            present = torch.ones(rgb.shape[0], 3, dtype=torch.bool)
        feats = [e(x).relu() for e, x in zip(self.enc, (rgb, depth, ir))]
        pooled = torch.cat([f.mean((2, 3)) * present[:, i:i + 1].float() for i, f in enumerate(feats)], 1)
        logits = self.head(pooled)[:, 0]
        out = {"logits": logits, "score": torch.sigmoid(logits)}
        if self.trace is not None:
            out["trace"] = self.trace(feats[0])
        return out
