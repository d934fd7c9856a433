"""MMDG (Lin et al., CVPR 2024): multimodal domain-generalised face anti-spoofing.

This first part holds ReGrad (paper Eq. 5) as a pure function; the network follows below.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

_EPS = 1e-12


def _project(g: torch.Tensor, onto: torch.Tensor) -> torch.Tensor:
    """Component of `g` along `onto` (zero when `onto` is the zero vector)."""
    denom = (onto * onto).sum()
    if float(denom) <= _EPS:
        return torch.zeros_like(g)
    return (g * onto).sum() / denom * onto


def _agree_or_orthogonal(g: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Eq. 5's modulation of `g` against `ref`: its projection on `ref` when the two agree
    (g . ref > 0), otherwise its part orthogonal to `ref` (the conflicting component dropped)."""
    proj = _project(g, ref)
    if float((g * ref).sum()) > 0:
        return proj
    return g - proj


def regrad(grads: Sequence[torch.Tensor], ssp_losses: Sequence[float], certainties: Sequence[float],
           owner: Optional[int]) -> torch.Tensor:
    """Re-weighted gradient of one parameter (paper Eq. 5), to be added to its CE-loss gradient.

    grads: the three modalities' (RGB, depth, IR) gradients of the parameter, each from that
    modality's SSP loss, all of one shape. ssp_losses, certainties: three floats each (the
    modalities' SSP losses and mean certainties). owner: 0/1/2 for the modality the parameter
    belongs to, or None for a parameter shared by all three.

    The fast modality is the one with the lowest SSP loss; every other modality is slow.
    - Owner slow: g_o + sum_{j != o} c_j * M(g_j, g_o), where M(g, r) is g's projection on r if
      g . r > 0, else g's part orthogonal to r: the others help the slow owner only along (or
      without conflicting with) its own direction, scaled by their certainty.
    - Owner fast: c_o * M(g_o, s) + sum_{j != o} g_j with s the sum of the other two: the fast
      owner is slowed down (certainty-scaled, and stripped of what conflicts with the slow ones).
    - Shared (owner None), our decision: the paper says the modulation acts on every trainable
      layer, and a shared parameter is "owned" by all three, so it is treated as owned by the fast
      modality, i.e. the fast-owner rule with o = fast. This slows the dominant modality on shared
      weights too, which is the paper's stated aim. (The official code skips shared parameters and
      misaligns its gradient list after the skip; we do neither.)
    """
    if len(grads) != 3 or len(ssp_losses) != 3 or len(certainties) != 3:
        raise ValueError("regrad needs three gradients, three SSP losses and three certainties "
                         "(RGB, depth, IR)")
    shape = grads[0].shape
    if any(g.shape != shape for g in grads):
        raise ValueError(f"regrad: gradients differ in shape {[tuple(g.shape) for g in grads]}; "
                         "pass the three modalities' gradients of ONE parameter")
    if owner is not None and owner not in (0, 1, 2):
        raise ValueError(f"regrad: owner must be 0 (RGB), 1 (depth), 2 (IR) or None, got {owner!r}")
    losses = [float(x) for x in ssp_losses]
    fast = min(range(3), key=lambda i: losses[i])
    o = fast if owner is None else owner
    others = [j for j in range(3) if j != o]
    g_o = grads[o]
    if o != fast:
        out = g_o.clone()
        for j in others:
            out = out + float(certainties[j]) * _agree_or_orthogonal(grads[j], g_o)
        return out
    s = grads[others[0]] + grads[others[1]]
    return float(certainties[o]) * _agree_or_orthogonal(g_o, s) + s
