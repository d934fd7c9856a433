"""Model checkpoints: one torch.save'd dict that rebuilds its model through the registry.

Format "edge-fas-checkpoint/1": {"format", "name", "preset", "config", "state_dict", "meta"}.
A model initialised from pretrained backbone weights (models/pretrained.py) records that file, its
sha256, layout and normalisation as meta["pretrained"], and the rebuilt model gets it back as
`pretrained_info`, so a fine-tune of a fine-tune still names the ImageNet file it started from.
`config` holds plain values only (tuples become lists), so the file loads with
torch.load(weights_only=True); `build(name, preset, **config)` gives the same architecture.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from edge_fas.errors import ArtifactError, EdgeFasError

FORMAT = "edge-fas-checkpoint/1"
KEYS = ("format", "name", "preset", "config", "state_dict", "meta")


def _plain(value):
    """Tuples -> lists, numpy values -> Python numbers/lists, paths -> str, recursively, so the dict
    holds only types that torch.load(weights_only=True) accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy":  # np.float32(0.3), np.ndarray: not loadable with weights_only
        return value.tolist() if hasattr(value, "tolist") else value.item()
    return value


def save_checkpoint(path, model: nn.Module, **meta) -> Path:
    """Write `model` (any registry model) and `meta` (plain values: epoch, metrics, ...) to `path`."""
    for attr in ("name", "preset", "config"):
        if not hasattr(model, attr):
            raise ArtifactError(f"save_checkpoint: the model has no '{attr}' attribute; build it with edge_fas.models.build()")
    path = Path(path)
    if getattr(model, "pretrained_info", None) and "pretrained" not in meta:
        meta = {**meta, "pretrained": model.pretrained_info}
    data = {
        "format": FORMAT,
        "name": model.name,
        "preset": model.preset,
        "config": _plain(model.config),
        # contiguous: the file does not depend on the layout training ran in (train.memory_format: channels_last
        # on the CPU), and readers that need plain row-major tensors (numpy, safetensors) get them
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": _plain(meta),
    }
    return _save_whole(data, path)


def _save_whole(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the real name
    return path


FP16_MAX = 65504.0


def save_half_copy(src, dst) -> Path:
    """A copy of checkpoint `src` to carry a training line between machines (train.init_from continues from it):
    floating-point weights stored as float16, half the size; everything else as it was. load_checkpoint casts
    them back into the float32 model. Refuses a weight beyond float16's range. The rounding (relative 5e-4) is
    far below one fine-tuning step's change, but an artifact exported from the copy is not the original's:
    export from the original where it is at hand."""
    from edge_fas.artifact import sha256_file  # names the original (meta.copied_from_sha256) wherever the copy goes
    src, dst = Path(src), Path(dst)
    load_checkpoint(src)  # the same checks, names and fixes as any checkpoint
    data = torch.load(src, map_location="cpu", weights_only=True)
    state = {}
    for key, value in data["state_dict"].items():
        if value.is_floating_point():
            peak = float(value.abs().max()) if value.numel() else 0.0
            if not peak <= FP16_MAX:  # also catches inf and nan
                raise ArtifactError(f"checkpoint {src}: weight {key} reaches {peak:g}, beyond float16's {FP16_MAX:g}; "
                                    "carry the float32 file itself")
            value = value.half()
        state[key] = value.contiguous()
    data = {**data, "state_dict": state, "meta": {**data["meta"], "stored_as": "float16", "copied_from": src.name,
                                                        "copied_from_sha256": sha256_file(src)}}
    return _save_whole(data, dst)


def average_checkpoints(sources, dst) -> Path:
    """The uniform average of checkpoints of one architecture (a "soup": fine-tunes of one starting point, e.g. the
    same recipe with other training seeds), parameter by parameter with the buffers, written to `dst` in float32.
    The average has no validation of its own, so the sources' calibration, operating point, abstention level and
    map scales are dropped: export it with an explicit --threshold, or fine-tune it (train.init_from), before it
    makes decisions. Integer buffers (BatchNorm's step counts) come from the first source."""
    from edge_fas.operating_point import DECISION_KEYS

    sources = [Path(s) for s in sources]
    if len(sources) < 2:
        raise ArtifactError(f"average_checkpoints: give two or more checkpoints to average, got {len(sources)}")
    datas = []
    for src in sources:
        load_checkpoint(src)  # the same checks, names and fixes as any checkpoint
        datas.append(torch.load(src, map_location="cpu", weights_only=True))
    first = datas[0]
    for src, data in zip(sources[1:], datas[1:]):
        same = (data["name"], data["preset"], data["config"]) == (first["name"], first["preset"], first["config"])
        if not same or data["state_dict"].keys() != first["state_dict"].keys():
            raise ArtifactError(f"average_checkpoints: {src} is not the architecture of {sources[0]} "
                                f"({data['name']} {data['preset']} against {first['name']} {first['preset']}, or other "
                                "config or weights); average only checkpoints of one model")
    state = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            value = torch.stack([d["state_dict"][key].float() for d in datas]).mean(0)
        state[key] = value.contiguous()
    dropped = set(DECISION_KEYS) | {"threshold", "threshold_source", "threshold_split", "stored_as", "copied_from"}
    meta = {k: v for k, v in first["meta"].items() if k not in dropped}
    meta["averaged_from"] = [f"{s.parent.name}/{s.name}" for s in sources]  # folder and file: no machine's path
    return _save_whole({**first, "state_dict": state, "meta": meta}, Path(dst))


def load_checkpoint(path, map_location="cpu", extend: dict | None = None):
    """Rebuild the model saved at `path`; returns (model in eval mode, info dict).

    info = {"name", "preset", "config", "meta", "format"}. Unknown formats, missing keys, an unknown
    model name and state dicts that do not fit the rebuilt model raise ArtifactError naming the file.
    `extend`: config options that add modules to the saved model (a fine-tune that adds a head, e.g.
    spoof_trace's family_head); the model is built with them, and only the weights they add
    (model.extension_weights) may be missing from the file: those keep their fresh initialisation.
    """
    from edge_fas.models.registry import build

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist; pass the path of a .pt written by save_checkpoint (e.g. runs/demo/checkpoint.pt)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle errors, truncated files, non-torch files
        raise ArtifactError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); re-save it with edge_fas.models.save_checkpoint") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ArtifactError(f"checkpoint {path} has format {got!r}, expected {FORMAT!r}; re-save it with edge_fas.models.save_checkpoint")
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ArtifactError(f"checkpoint {path} lacks {missing}; it is incomplete, re-save it with edge_fas.models.save_checkpoint")
    extend = dict(extend or {})
    try:
        model = build(data["name"], data["preset"], **{**data["config"], **extend})
    except EdgeFasError as e:
        raise ArtifactError(f"checkpoint {path} cannot be rebuilt: {e}") from e
    fresh = tuple(model.extension_weights(extend)) if extend and hasattr(model, "extension_weights") else ()
    if extend and not fresh:
        raise ArtifactError(f"checkpoint {path}: options {sorted(extend)} add no weights to a {data['name']!r} model; "
                            "only options that add a module (spoof_trace's family_head) extend a trained checkpoint")
    own = model.state_dict()
    bad = [k for k, v in data["state_dict"].items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing_w = sorted(k for k in set(own) - set(data["state_dict"]) if not k.startswith(fresh))
    extra = sorted(set(data["state_dict"]) - set(own))
    if bad or missing_w or extra:
        sd = data["state_dict"]
        parts = []
        if bad:
            parts.append("shape mismatch: " + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in bad[:3]))
        if missing_w:
            parts.append(f"missing weights: {missing_w[:3]}")
        if extra:
            parts.append(f"unexpected weights: {extra[:3]}")
        raise ArtifactError(f"checkpoint {path} does not fit model {data['name']!r} ({data['preset']}): {'; '.join(parts)}; "
                            "it was written by another version of the model code, retrain or re-export it")
    model.load_state_dict(data["state_dict"], strict=not fresh)
    model.eval()
    if isinstance(data["meta"], dict) and data["meta"].get("pretrained"):
        model.pretrained_info = data["meta"]["pretrained"]
    info = {k: data[k] for k in ("format", "name", "preset", "config", "meta")}
    info["config"] = {**data["config"], **extend}
    return model, info
