"""A toy model with the model interface (score, logits and a trace map) for tests that need an
exported artifact without training a real network."""

import torch
from torch import nn


class Tiny(nn.Module):
    """The models' interface at toy size, with a trace map output for the GUI."""

    name, preset, input_size = "tiny", "edge", 32
    config = {"width": 4}

    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList(nn.Conv2d(c, 4, 3, stride=4) for c in (3, 1, 1))
        self.head = nn.Linear(12, 1)
        self.trace = nn.Conv2d(4, 3, 1)

    def forward(self, rgb, depth, ir, present=None):
        if present is None:
            present = torch.ones(rgb.shape[0], 3, dtype=torch.bool)
        feats = [e(x).relu() for e, x in zip(self.enc, (rgb, depth, ir))]
        pooled = torch.cat([f.mean((2, 3)) * present[:, i:i + 1].float() for i, f in enumerate(feats)], 1)
        logits = self.head(pooled)[:, 0]
        return {"logits": logits, "score": torch.sigmoid(logits), "trace": self.trace(feats[0])}


def export_tiny(folder, parity_count: int = 8):
    """The toy model exported as an artifact (seeded, threshold 0.5 on split "test"): what `run` tests load."""
    from edge_fas.export import export_model
    torch.manual_seed(0)
    return export_model(Tiny(), folder, threshold=0.5, threshold_split="test", parity_count=parity_count,
                        parity_source="random", overwrite=True)
