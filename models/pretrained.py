"""Pretrained backbone files: read them, tell which layout they hold, load them into a model, and say
which RGB normalisation the weights were trained with.

A user brings the file (nothing downloads): a timm ViT (e.g. `vit_base_patch16_224.augreg2_in21k_ft_in1k`,
`model.safetensors` from its hub folder), a torchvision `vit_b_16` or a torchvision / timm
ResNet-50, as safetensors or as a torch pickle (`.pth`, `.bin`, `.pt`; read with weights_only=True).
`load_pretrained(model, path)` is what `model.pretrained: PATH` in a training config and
`build(name, pretrained=PATH)` call:

1. `read_weights` reads the file into a flat {key: tensor} dict (unwrapping "state_dict" / "model"
   and DataParallel's "module." prefix);
2. `detect_layout` names the layout from its keys: "timm-vit", "torchvision-vit" or "resnet"
   (timm's ResNet-50 uses torchvision's key names);
3. the model's own `load_pretrained(state_dict)` maps the keys (models/vit.py, resnet.py, mmdg.py)
   and raises ArtifactError for missing keys, keys of another architecture and wrong shapes;
4. `normalisation` gives the mean/std the weights expect. timm's ViT weights (augreg, orig_in21k)
   were trained on inputs scaled to [-1, 1] (mean = std = 0.5); torchvision's ViT and ResNet and
   timm's ResNet-50 weights on ImageNet mean/std. A hub folder's `config.json` next to the file
   (timm writes its `pretrained_cfg` there, with "mean" and "std") overrides the default, so DeiT or
   CLIP weights in the timm ViT layout get their own statistics.

The model keeps the result as `model.pretrained_info` (file, sha256, layout, normalisation, counts):
save_checkpoint writes it into the checkpoint's meta, training puts the normalisation into the
preprocessing parameters that the checkpoint and then the exported artifact carry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from edge_fas.errors import ArtifactError

IMAGENET = {"rgb_mean": (0.485, 0.456, 0.406), "rgb_std": (0.229, 0.224, 0.225)}
HALF = {"rgb_mean": (0.5, 0.5, 0.5), "rgb_std": (0.5, 0.5, 0.5)}
DEFAULT_NORMALISATION = {"timm-vit": HALF, "torchvision-vit": IMAGENET, "resnet": IMAGENET}
LAYOUT_NAMES = {"timm-vit": "a timm ViT (patch_embed.proj, blocks.N, ...)",
                "torchvision-vit": "a torchvision ViT (conv_proj, encoder.layers.encoder_layer_N, ...)",
                "resnet": "a torchvision/timm ResNet (conv1, bn1, layer1.0, ...)"}
SAFETENSORS_SUFFIXES = (".safetensors",)


class NamedStateDict(dict):
    """A state dict that remembers the file it came from, so errors raised further down name it."""

    def __init__(self, data, name: str):
        super().__init__(data)
        self.name = name


def read_weights(source, what: str) -> tuple[dict, str]:
    """{key: tensor} from a file (safetensors or a torch pickle) or from a dict; (state dict, name).
    The state dict is a NamedStateDict: passed on to another loader it keeps the file's name."""
    if not isinstance(source, (str, os.PathLike)):
        sd, name = source, getattr(source, "name", "<state dict>")
    else:
        name = str(source)
        if not os.path.isfile(name):
            raise ArtifactError(f"{what}: {name} does not exist; pass the path of a local weights file "
                                "(.safetensors or .pth); nothing is downloaded")
        if name.endswith(SAFETENSORS_SUFFIXES):
            sd = _read_safetensors(name, what)
        else:
            try:
                sd = torch.load(name, map_location="cpu", weights_only=True)
            except Exception as e:  # a truncated file, a pickle of code, a safetensors file misnamed .pth
                hint = " (it looks like safetensors: name it .safetensors)" if _looks_like_safetensors(name) else ""
                raise ArtifactError(f"{what}: {name} cannot be read as a torch state dict{hint} "
                                    f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise ArtifactError(f"{what}: {name} does not hold a state dict (a mapping of names to tensors)")
    return NamedStateDict({k.removeprefix("module."): v for k, v in sd.items()}, name), name


def _looks_like_safetensors(path: str) -> bool:
    with open(path, "rb") as f:  # 8-byte little-endian header length, then a JSON header
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: str, what: str) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ArtifactError(f"{what}: {path} is a safetensors file and the 'safetensors' package is not "
                            "installed; pip install safetensors (it is in edge-fas[train])") from None
    try:
        return load_file(path, device="cpu")
    except Exception as e:
        raise ArtifactError(f"{what}: {path} is not a readable safetensors file ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None


def detect_layout(sd: dict) -> str | None:
    """"timm-vit", "torchvision-vit", "resnet", or None for anything else."""
    if "patch_embed.proj.weight" in sd and any(k.startswith("blocks.0.") for k in sd):
        return "timm-vit"
    if "conv_proj.weight" in sd and any(k.startswith("encoder.layers.encoder_layer_0.") for k in sd):
        return "torchvision-vit"
    if "conv1.weight" in sd and any(k.startswith("layer1.0.") for k in sd):
        return "resnet"
    return None


def normalisation(layout: str, path: str | None) -> dict:
    """The RGB mean/std the weights were trained with: the hub folder's config.json, else the
    layout's default. Plain lists, ready for PreprocessParams."""
    norm = {k: list(v) for k, v in DEFAULT_NORMALISATION[layout].items()}
    cfg_file = Path(path).with_name("config.json") if path else None
    if cfg_file is not None and cfg_file.is_file():
        try:
            doc = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as e:
            raise ArtifactError(f"pretrained weights: {cfg_file} beside {path} is not valid JSON ({e}); "
                                "fix or remove it (it is read for the weights' mean/std)") from None
        pc = doc.get("pretrained_cfg", doc) if isinstance(doc, dict) else {}
        mean, std = pc.get("mean"), pc.get("std")
        if mean is not None or std is not None:
            if not (_three_numbers(mean) and _three_numbers(std)):
                raise ArtifactError(f"pretrained weights: {cfg_file} gives mean {mean!r} and std {std!r}; "
                                    "both must be lists of three numbers (RGB)")
            norm = {"rgb_mean": [float(v) for v in mean], "rgb_std": [float(v) for v in std]}
    return norm


def _three_numbers(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)


def _sha256(path: str) -> str:
    from edge_fas.artifact import sha256_file
    return sha256_file(path)


def load_pretrained(model, source) -> dict:
    """Load a backbone weights file (or state dict) into `model` through its key mapping.

    Returns (and stores as `model.pretrained_info`) {"file", "sha256", "layout", "normalisation",
    "loaded", "skipped"}; "loaded"/"skipped" are counts. Raises ArtifactError naming the file for a
    missing or unreadable file, a layout the model cannot take, missing keys, keys of another
    architecture and wrong shapes.
    """
    what = f"{getattr(model, 'name', type(model).__name__)} pretrained weights"
    if not hasattr(model, "load_pretrained"):
        raise ArtifactError(f"{what}: this model has no pretrained backbone to load")
    sd, name = read_weights(source, what)
    layout = detect_layout(sd)
    accepted = tuple(getattr(model, "pretrained_layouts", DEFAULT_NORMALISATION))
    if layout not in accepted:
        held = LAYOUT_NAMES.get(layout, f"no known backbone layout (first keys: {sorted(sd)[:4]})")
        raise ArtifactError(f"{what}: {name} holds {held}; this model takes "
                            f"{' or '.join(LAYOUT_NAMES[a] for a in accepted)} weights")
    if layout == "torchvision-vit":
        sd = NamedStateDict(torchvision_vit_to_timm(sd), name)
    result = model.load_pretrained(sd) or {}
    if isinstance(result, dict) and result and all(isinstance(v, dict) for v in result.values()):
        loaded = sum(len(v.get("loaded", ())) for v in result.values())  # one entry per encoder (mmfas)
        skipped = sorted({k for v in result.values() for k in v.get("skipped", ())})
    else:
        loaded, skipped = len(result.get("loaded", ())), sorted(result.get("skipped", ()))
    path = name if isinstance(source, (str, os.PathLike)) else None
    info = {"file": path or name, "sha256": _sha256(path) if path else None, "layout": layout,
            "normalisation": normalisation(layout, path), "loaded": loaded, "skipped": len(skipped)}
    model.pretrained_info = info
    return info


_TV_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj_weight": "attn.qkv.weight",
             "self_attention.in_proj_bias": "attn.qkv.bias", "self_attention.out_proj": "attn.proj",
             "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2", "mlp.linear_1": "mlp.fc1", "mlp.linear_2": "mlp.fc2"}
_TV_TOP = {"conv_proj.weight": "patch_embed.proj.weight", "conv_proj.bias": "patch_embed.proj.bias",
           "class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
           "encoder.ln.weight": "norm.weight", "encoder.ln.bias": "norm.bias"}


def torchvision_vit_to_timm(sd: dict) -> dict:
    """Rename a torchvision VisionTransformer state dict to timm's keys (same tensors: torchvision's
    in_proj stacks q, k, v in timm's qkv order). Keys it does not know are kept as they are."""
    out = {}
    for k, v in sd.items():
        new = _TV_TOP.get(k)
        if new is None and k.startswith("encoder.layers.encoder_layer_"):
            idx, rest = k[len("encoder.layers.encoder_layer_"):].split(".", 1)
            for tv, timm in _TV_BLOCK.items():
                if rest == tv or rest.startswith(tv + "."):
                    new = f"blocks.{idx}.{timm}{rest[len(tv):]}"
                    break
        if new is None and k.startswith("heads."):
            new = "head." + k.split(".")[-1]
        out[new or k] = v
    return out
