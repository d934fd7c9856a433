"""Shared plumbing for the single-optimiser models (mmfas and the baselines): present masks,
config merging with clear errors, and the one-step `train_step` (with gradient accumulation)."""

from __future__ import annotations

import torch

from edge_fas.errors import ConfigError

MODALITY_ORDER = ("rgb", "depth", "ir")  # the columns of `present`
MODALITY_CHANNELS = {"rgb": 3, "depth": 1, "ir": 1}


def merge_config(name: str, presets: dict, preset: str, overrides: dict) -> dict:
    """presets[preset] updated by overrides; unknown preset or key -> ConfigError naming both."""
    if preset not in presets:
        raise ConfigError(f"{name}: unknown preset {preset!r}; use one of {sorted(presets)}")
    unknown = sorted(set(overrides) - set(presets[preset]))
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {unknown}; known options: {sorted(presets[preset])}")
    return {**presets[preset], **overrides}


def modality_subset(name: str, value) -> tuple[str, ...]:
    """A model's `modalities` option as a tuple in RGB, depth, IR order; ConfigError naming the model
    for an empty, repeated or unknown entry."""
    mods = (value,) if isinstance(value, str) else tuple(value)
    if not mods or len(set(mods)) != len(mods) or any(m not in MODALITY_ORDER for m in mods):
        raise ConfigError(f"{name}: modalities must be distinct names among {list(MODALITY_ORDER)} "
                          f"(e.g. ['rgb'] or ['rgb', 'depth', 'ir']); got {value!r}")
    return tuple(m for m in MODALITY_ORDER if m in mods)


def present_mask(rgb: torch.Tensor, present) -> torch.Tensor:
    """(B, 3) float mask of present modalities (all ones when present is None)."""
    if present is None:
        return torch.ones(rgb.shape[0], 3, dtype=rgb.dtype, device=rgb.device)
    return present.to(device=rgb.device, dtype=rgb.dtype).reshape(rgb.shape[0], 3)


def masked_inputs(rgb, depth, ir, present):
    """Zero the images of missing modalities (so a caller's stale pixels cannot leak in)."""
    p = present_mask(rgb, present)
    return {
        "rgb": rgb * p[:, 0].view(-1, 1, 1, 1),
        "depth": depth * p[:, 1].view(-1, 1, 1, 1),
        "ir": ir * p[:, 2].view(-1, 1, 1, 1),
    }, p


def scores(logits: torch.Tensor) -> dict:
    """logits (B,) or (B, 1) -> {"logits": (B,), "score": P(attack) (B,)}."""
    logits = logits.reshape(-1)
    return {"logits": logits, "score": torch.sigmoid(logits)}


def bce(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.reshape(-1), label.float().reshape(-1))


def adamw_optimisers(model, lr=None, weight_decay=None) -> dict:
    """{"model": AdamW} with the model's paper lr / weight decay unless given (single_train_step's key)."""
    lr = model.paper_training["lr"] if lr is None else lr
    wd = model.paper_training["weight_decay"] if weight_decay is None else weight_decay
    return {"model": torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)}


def single_train_step(model, batch: dict, optimisers: dict, scaler=None, accumulate: int = 1, apply: bool = True) -> dict:
    """One forward/backward with the model's only optimiser ("model"); returns float terms.

    Gradient accumulation: with `accumulate` k > 1 the loss is divided by k and the gradients add
    up over the calls until one with `apply` True steps the optimiser (the trainer passes True on
    every k-th batch and on an epoch's last one). The first call after a step clears the gradients.
    """
    if accumulate < 1:
        raise ValueError(f"{model.name}: accumulate must be >= 1, got {accumulate}")
    model.train()
    opt = optimisers["model"]
    out = model(batch["rgb"], batch["depth"], batch["ir"], batch.get("present"))
    terms = model.loss(batch, out)
    if getattr(model, "_pending_batches", 0) == 0:
        opt.zero_grad(set_to_none=True)
    loss = terms["total"] / accumulate if accumulate > 1 else terms["total"]
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if apply:
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        model._pending_batches = 0
    else:
        model._pending_batches = getattr(model, "_pending_batches", 0) + 1
    names = list(terms)
    return dict(zip(names, torch.stack([terms[k].detach().float().reshape(()) for k in names]).tolist()))
