"""The anti-spoofing networks (mmfas, mmdg, spoof_trace and the vit/resnet50 baselines)."""

from edge_fas.models.registry import MODEL_NAMES, PRESETS, build

__all__ = ["MODEL_NAMES", "PRESETS", "build", "save_checkpoint", "load_checkpoint"]


def save_checkpoint(path, model, **meta):
    """Write `model` to `path` (see models/checkpoint.py)."""
    from edge_fas.models.checkpoint import save_checkpoint as _save

    return _save(path, model, **meta)


def load_checkpoint(path, map_location="cpu", extend: dict | None = None):
    """Rebuild a model saved by save_checkpoint; returns (model, info) (see models/checkpoint.py)."""
    from edge_fas.models.checkpoint import load_checkpoint as _load

    return _load(path, map_location=map_location, extend=extend)
