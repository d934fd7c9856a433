"""Model registry: `build(name, preset, **overrides)` finds a model's builder by name.

Each entry of `_BUILDERS` maps a model name to "module:function" inside the edge_fas.models
package. The module is imported lazily on first use, so a model with heavy imports costs nothing
until it is built, and a broken model module does not break the others.

To register a model add ONE line to `_BUILDERS`, exactly in this format:

    "name": "module:function",

where `edge_fas.models.<module>.<function>(preset="paper"|"edge", **overrides)` returns an
nn.Module with the attributes `name`, `preset`, `config`, `input_size`, `output_names`.
"""

from __future__ import annotations

import importlib

from torch import nn

from edge_fas.errors import ConfigError

PRESETS = ("paper", "edge")

_BUILDERS = {
    "mmfas": "mmfas:build",
    "mmdg": "mmdg:build",
    "spoof_trace": "spoof_trace:build",
    "vit": "baselines:build_vit",
    "resnet50": "baselines:build_resnet50",
}

MODEL_NAMES = tuple(_BUILDERS)
REQUIRED_ATTRS = ("name", "preset", "config", "input_size", "output_names")


def builder(name: str):
    """Return the builder function registered for `name` (imports its module)."""
    if name not in _BUILDERS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    module_name, func_name = _BUILDERS[name].split(":")
    module = importlib.import_module(f"edge_fas.models.{module_name}")
    return getattr(module, func_name)


def build(name: str, preset: str = "paper", **overrides) -> nn.Module:
    """Build model `name` with `preset` ("paper" or "edge"); overrides change single config keys.

    `build(m.name, m.preset, **m.config)` rebuilds the same architecture as model `m`.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for model {name!r}: choose 'paper' or 'edge'")
    try:
        model = builder(name)(preset=preset, **overrides)
    except ValueError as e:  # a builder's own option check: report it as a config error (no traceback in the CLI)
        raise ConfigError(f"model {name!r} ({preset}): {e}") from e
    missing = [a for a in REQUIRED_ATTRS if not hasattr(model, a)]
    if missing:
        raise ConfigError(f"model {name!r} lacks the attributes {missing}: fix its builder in models/")
    return model
