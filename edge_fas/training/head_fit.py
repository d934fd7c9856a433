"""train.fit: head -- fit a model's linear attack-family head on its frozen network (a linear probe made the
model's own head, as linear evaluation of a frozen backbone does).

The head's input (spoof_trace's `family_features`: each stream's pooled last encoder stage and, with
`family_pixels`, its pooled input) is read once per pass over the training split, each pass with fresh
augmentation and modality drop (train.epochs passes, the class-balanced draws training uses). A multinomial
logistic regression over edge_fas.data.species.FAMILIES is fitted to those rows by full-batch L-BFGS on
standardised features, its L2 penalty chosen from RIDGES by FOLDS-fold cross-validation on the training rows
alone (each fold a block of samples, so a sample's views and its neighbouring renders stay together). The
standardisation is folded into the head's weights, so the exported graph is the model's own.

Why: linear probes read silicone masks from a trained edge model's frozen features better than its score does
(benchmarks/bench_silicone_probe.py), and training the head jointly for one epoch on two CPU cores did not carry
that over (docs/demo-model.md, r48). (The probes' pooled-pixel read needs crops cut at the rig's true face box; at
the detector's box, where the product cuts, it mostly goes: docs/demo-model.md, "Where the probes' silicone came
from".) Reading the features is one forward pass of the
encoder per sample. The fit is 26 full-batch L-BFGS solves (RIDGES x FOLDS, then all rows; one with a penalty given,
train.head_penalties): on 48,000 rows of 2,048
features that is 15 to 50 minutes on two CPU cores, bound by memory bandwidth (each pass reads the float64 rows).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from edge_fas.errors import ConfigError
from edge_fas.training.data import to_device

__all__ = ["RIDGES", "FOLDS", "fit_head", "read_features", "fit_logistic", "choose_ridge"]

RIDGES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # penalty 0.5 * ridge * |W|^2 on the mean cross-entropy
FOLDS = 5


def read_features(model, data, passes: int, device, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, family, sample index) of `passes` augmented passes over the training split, rows whose family
    the source names (family -1 is left out, as the head's loss leaves it out)."""
    model.eval()
    rows, fams, idx = [], [], []
    total = passes * len(data.loader)
    t0 = time.perf_counter()
    for p in range(passes):
        data.set_epoch(p)
        for step, batch in enumerate(data.loader):
            if batch is None:
                continue
            fam = batch["family"].numpy()
            keep = fam >= 0
            if keep.any():
                b = to_device(batch, device)
                x = model.family_features(b["rgb"], b["depth"], b["ir"], b["present"]).float().cpu().numpy()
                rows.append(x[keep])
                fams.append(fam[keep])
                idx.append(batch["index"].numpy()[keep])
            done = p * len(data.loader) + step + 1
            if progress and (done % 50 == 0 or done == total):
                seen = sum(len(r) for r in rows)
                print(f"head fit: read {done}/{total} batches ({seen / (time.perf_counter() - t0):.1f} samples/s)",
                      file=sys.stderr, flush=True)
    if not rows:
        raise ConfigError("train.fit head: no training sample names its attack family (edge_fas.data.species.FAMILIES), "
                          "so there is nothing to fit the family head to; use train.fit all")
    return np.concatenate(rows), np.concatenate(fams), np.concatenate(idx)


def fit_logistic(z: torch.Tensor, y: torch.Tensor, classes: int, ridge: float, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """(W (features x classes), b): L2-penalised multinomial logistic regression on standardised rows z by
    full-batch L-BFGS, float64, from zero (a convex problem: the start does not matter)."""
    w = torch.zeros(z.shape[1], classes, dtype=z.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=z.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + 0.5 * ridge * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def choose_ridge(z: torch.Tensor, y: torch.Tensor, groups: np.ndarray, classes: int,
                 progress: bool = False, ridges=RIDGES) -> tuple[float, dict]:
    """(ridge, {ridge: mean held-out cross-entropy}) over `ridges` by FOLDS-fold cross-validation, folds by group.
    With progress, a line per penalty on stderr (the fits take minutes to most of an hour on a small CPU)."""
    losses = {}
    t0 = time.perf_counter()
    for i, ridge in enumerate(ridges, 1):
        held = []
        for k in range(FOLDS):
            out = torch.from_numpy(groups == k)
            w, b = fit_logistic(z[~out], y[~out], classes, ridge)
            held.append(float(F.cross_entropy(z[out] @ w + b, y[out], reduction="sum")))
        losses[ridge] = sum(held) / len(y)
        if progress:
            print(f"head fit: penalty {ridge:g}, held-out cross-entropy {losses[ridge]:.4f} ({i} of {len(ridges)} "
                  f"penalties by {FOLDS} folds, {(time.perf_counter() - t0) / 60:.1f} min)", file=sys.stderr, flush=True)
    return min(losses, key=losses.get), losses


def fit_head(model, data, passes: int, device, progress: bool = True, ridges=None) -> dict:
    """Fit `model`'s family head on its frozen network over `passes` passes of `data`'s training loader, in
    place; returns the fit's record for the training log. `ridges` (train.head_penalties): the penalties
    cross-validation chooses from, RIDGES when None; one penalty is taken as given, with no cross-validation
    (the fit's 25 held-out solves are most of its time: a rule that fixes a penalty a series of fits kept
    choosing pays for the one fit on all rows only)."""
    head = getattr(model, "family_head", None)
    if head is None or not hasattr(model, "family_features"):
        raise ConfigError(f"train.fit head fits a family head, and this {model.name} model has none; add one with "
                          "train.init_extend={family_head: true} (spoof_trace), or use train.fit all")
    t0 = time.perf_counter()
    x, fam, idx = read_features(model, data, passes, device, progress)
    t_read = time.perf_counter() - t0
    mu, sd = x.mean(0), x.std(0)
    sd[sd < 1e-6] = 1.0  # a constant feature (a cell no crop reaches) standardises to 0, not to noise
    z = torch.from_numpy(((x - mu) / sd).astype(np.float64))
    y = torch.from_numpy(fam.astype(np.int64))
    groups = (idx.astype(np.int64) * FOLDS) // max(len(data.train), 1)
    classes = head.out_features
    ridges = tuple(float(r) for r in ridges) if ridges else RIDGES
    if len(ridges) == 1:
        ridge, cv = ridges[0], {}
        if progress:
            print(f"head fit: penalty {ridge:g} given (train.head_penalties), no cross-validation; fitting it on all "
                  f"{len(y)} rows", file=sys.stderr, flush=True)
    else:
        ridge, cv = choose_ridge(z, y, groups, classes, progress, ridges)
        if progress:
            print(f"head fit: penalty {ridge:g} chosen; fitting it on all {len(y)} rows", file=sys.stderr, flush=True)
    w, b = fit_logistic(z, y, classes, ridge)
    train_loss = float(F.cross_entropy(z @ w + b, y))
    # fold the standardisation in: W'x + b' = W((x - mu) / sd) + b
    w_eff = w / torch.from_numpy(sd.astype(np.float64))[:, None]
    b_eff = b - torch.from_numpy((mu / sd).astype(np.float64)) @ w
    with torch.no_grad():
        head.weight.copy_(w_eff.T.to(head.weight))
        head.bias.copy_(b_eff.to(head.bias))
    counts = np.bincount(fam, minlength=classes)
    return {"kind": "head_fit", "epoch": passes - 1, "rows": int(len(y)), "features": int(z.shape[1]),
            "family_rows": counts.tolist(), "ridge": ridge, "cv_loss": {str(k): round(v, 5) for k, v in cv.items()},
            "train_loss": round(train_loss, 5), "read_s": round(t_read, 1),
            "fit_s": round(time.perf_counter() - t0 - t_read, 1),
            "samples_per_s": round(len(y) / max(t_read, 1e-9), 2)}
