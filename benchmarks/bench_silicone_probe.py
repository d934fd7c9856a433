"""Does the network see silicone and then not use it, or does it not see it? Linear probes on its own features.

    .venv/bin/python benchmarks/bench_silicone_probe.py --checkpoint checkpoints/randomized-edge-line.pt \
        --model runs/ARTIFACT [--sets rand,rand_heldout | --transfer rand:rand_heldout] [--seeds 302,303] \
        [--framing detector | truth | metric | silhouette] [--per-species 500] [--workers 2]

The figures in docs/demo-model.md ("r48") are r46's (the line's copy in git before r49 replaced it: `git show
02beb3f:checkpoints/randomized-edge-line.pt > r46.pt`), framed at the true face box, which aligns faces more exactly
than any detector: at the detector's box the pooled pixels' silicone read mostly goes (docs/demo-model.md, "Where the
probes' silicone came from").

A diagnosis on the synthetic rig. Every candidate of the spoof_trace line scores silicone masks against bona fide
at AUC 0.60-0.69 while catching the other species. Two explanations call for different remedies:
- the encoder's features carry what tells silicone from skin, and the trace decoder and classifier (phi) do not
  pass it on: then a head trained on those features (cheap, on the CPU) would gain;
- the features do not carry it: then only a network that learns more (more people, more capacity, the GPU recipe)
  would.

This renders bona fide and silicone scenes (rig.sample of each range set at each --seed, indices 0..N-1; bona fide
index i and silicone index i share a person), cuts each with the artifact's preprocessing at the face detector's
box (--framing detector, the default: where the product cut before `framing: metric`, whatever framing the artifact
has; no crop where it finds no face), at
the rig's true face box (--framing truth: the eighteenth session's figures) or at the detector's centre with a side
set by the face's depth (--framing metric: the product's preprocessing framing 'metric', edge_fas.preprocess.framed_box,
whatever framing the artifact has) or with that square moved sideways onto the head's outline in depth
(--framing silhouette, framing 'silhouette'), runs the checkpoint's
PyTorch model in float32, and keeps, per crop, groups of features (global average pools):
- score: the network's own logit, phi's (the baseline a probe has to beat; a family head is not in it);
- aux: the three per-modality auxiliary logits on the encoder's last stage (Eq. 11);
- stage1, stage2, stage3: the fused encoder features after each stage, every modality;
- stage3_rgb, stage3_depth, stage3_ir: the last stage, one modality at a time;
- trace: the spoof trace's mean and mean absolute value per channel; phi: the classifier's last hidden layer;
- all: every group above;
- controls: stage3 and all of the same architecture freshly initialised (what any random features give), and
  pixels (each modality's crop pooled to 16 x 16: what no network gives), all streams and each stream alone;
  with `--fine-grid N`, depth and near-IR alone also pooled to N x N (`pixels_depth@N`, `pixels_ir@N`: does the
  cue grow at a finer grid than the family head's 16 x 16?).

For each group an L2-regularised logistic regression is fitted on one rig seed (its ridge chosen by 5-fold
cross-validation on that seed alone) and scored on the other, both ways, pooled. Fitted and scored on one range
set, a probe meets no range shift, which the network does; `--transfer rand:rand_heldout` fits on the training
ranges and scores on the held-out ones, as a head trained with the network would have to. It prints silicone's AUC and
APCER where BPCER is 5%, with 95% bootstrap intervals (bench_demo.py's conventions). Seeds 302 and 303 are no
benchmark's (edge_fas/data/evaluation_sets.py) and no training's. A probe fitted to silicone alone says what the
features hold, not what a network that must catch every species would reach; nothing here says what a real
camera would show.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RIDGES = (1e-1, 1.0, 10.0, 100.0, 1000.0)
GROUPS = ("score", "aux", "stage1", "stage2", "stage3", "stage3_rgb", "stage3_depth", "stage3_ir", "trace", "phi", "all",
          "random stage3", "random all", "pixels", "pixels_rgb", "pixels_depth", "pixels_ir")


def _crop(args):
    """The FaceCrop of one scene, or None where the rig drew no face."""
    from edge_fas.data.synthetic import _rig, detected_face_box, register
    from edge_fas.preprocess import crop_face, framed_box

    domain, seed, species, index, width, height, params, framing = args
    f = _rig(domain, seed, width, height).render(species, index)
    if f.truth is None or f.truth.face_box is None:
        return None
    box, reg = f.truth.face_box, register(f)
    if framing in ("detector", "metric", "silhouette"):  # the product's framings start at the detector's box: no crop
        # where it finds none
        box = detected_face_box(f.rgb, box)
        if box is None:
            return None
    if framing in ("metric", "silhouette"):  # the product's framings (preprocess.framed_box), whatever the artifact's
        box = framed_box(reg, box, replace(params, framing=framing))
    return crop_face(reg, box, params)


def features(model, crops, batch: int = 64) -> dict[str, np.ndarray]:
    """{group: (N, D) features} of `crops` through a spoof_trace model (eval mode, float32)."""
    import torch

    groups: dict[str, list] = {k: [] for k in ("score", "aux", "stage1", "stage2", "stage3", "trace", "phi")}
    # the fused stages and phi's last hidden layer, caught as generate() and classify() compute them
    hooks = [model.classifier[-2].register_forward_hook(lambda _m, _i, o: groups["phi"].append(o.mean(dim=(2, 3))))]
    for s, fusion in enumerate(model.fusions):
        hooks.append(fusion.register_forward_hook(
            lambda _m, _i, o, s=s: groups[f"stage{s + 1}"].append(torch.cat([f.mean(dim=(2, 3)) for f in o[0]], dim=1))))
    try:
        with torch.no_grad():
            for i in range(0, len(crops), batch):
                part = crops[i:i + batch]
                x = {k: torch.from_numpy(np.stack([getattr(c, k) for c in part])) for k in ("rgb", "depth", "ir")}
                pres = model._present(x["rgb"], torch.from_numpy(np.stack([c.present for c in part])).float())
                gen = model.generate(x, pres)
                _cmap, _score, logits = model.classify(gen["traces"])  # phi's logit alone, whatever heads it has
                groups["score"].append(logits[:, None])
                groups["aux"].append(gen["aux_logits"])
                t = torch.cat([gen["traces"][m] for m in model.modalities], dim=1)
                groups["trace"].append(torch.cat([t.mean(dim=(2, 3)), t.abs().mean(dim=(2, 3))], dim=1))
    finally:
        for h in hooks:
            h.remove()
    out = {k: torch.cat(v).numpy().astype(np.float64) for k, v in groups.items()}
    width = out["stage3"].shape[1] // len(model.modalities)
    for j, m in enumerate(model.modalities):
        out[f"stage3_{m}"] = out["stage3"][:, j * width:(j + 1) * width]
    out["all"] = np.hstack([out[k] for k in ("score", "aux", "stage1", "stage2", "stage3", "trace", "phi")])
    return out


def pixels(crops, size: int = 16) -> np.ndarray:
    """Each modality's crop average-pooled to size x size, flattened: a probe with no network at all."""
    import cv2

    rows = []
    for c in crops:
        planes = [p for p in np.concatenate([c.rgb, c.depth, c.ir])]
        rows.append(np.concatenate([cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA).ravel() for p in planes]))
    return np.array(rows, dtype=np.float64)


def pixel_group(crops, group: str, pooled_by_grid: dict | None = None) -> np.ndarray:
    """A pixels group's features: "pixels", "pixels_rgb", "pixels_depth" or "pixels_ir" at 16 x 16, or "@N" after
    the name for an N x N grid. pooled_by_grid: {grid: pixels(crops, grid)} shared by the groups of one set of
    crops, so each grid is pooled once."""
    stream, _, grid = group.partition("@")
    grid = int(grid or 16)
    pooled_by_grid = {} if pooled_by_grid is None else pooled_by_grid
    if grid not in pooled_by_grid:
        pooled_by_grid[grid] = pixels(crops, grid)
    pooled, cells = pooled_by_grid[grid], grid * grid  # colour's three channels, then depth, then near-IR
    cut = {"pixels": slice(None), "pixels_rgb": slice(0, 3 * cells), "pixels_depth": slice(3 * cells, 4 * cells),
           "pixels_ir": slice(4 * cells, None)}[stream]
    return pooled[:, cut]


def _auc(score, y) -> float:
    from edge_fas.metrics import auc

    return auc(score, y)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float):
    """bench_silicone_cues.fit_logistic, stopped once converged."""
    from bench_silicone_cues import fit_logistic as fit

    return fit(x, y, ridge=ridge, steps=30, tol=1e-6)


def choose_ridge(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """The ridge from RIDGES with the best mean held-out-fold AUC, on the fitting seed's samples only."""
    from bench_silicone_cues import logistic_score

    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, folds)
    best, best_auc = RIDGES[0], -1.0
    for ridge in RIDGES:
        aucs = []
        for k in range(folds):
            test = parts[k]
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            model = fit_logistic(x[train], y[train], ridge=ridge)
            aucs.append(_auc(logistic_score(model, x[test]), y[test]))
        if np.mean(aucs) > best_auc:
            best, best_auc = ridge, float(np.mean(aucs))
    return best


def held_out(by_seed: dict[int, tuple[np.ndarray, np.ndarray]], directions=None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(scores, labels, ridges): each seed (or each of `directions`) scored by the probe fitted on the other(s)."""
    from bench_silicone_cues import logistic_score

    scores, labels, ridges = [], [], []
    for s in (by_seed if directions is None else directions):
        xs = np.vstack([by_seed[t][0] for t in by_seed if t != s])
        ys = np.concatenate([by_seed[t][1] for t in by_seed if t != s])
        ridge = choose_ridge(xs, ys)
        scores.append(logistic_score(fit_logistic(xs, ys, ridge=ridge), by_seed[s][0]))
        labels.append(by_seed[s][1])
        ridges.append(ridge)
    return np.concatenate(scores), np.concatenate(labels), ridges


def report(name: str, table: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]], resamples: int = 1000,
           directions=None) -> None:
    from bench_demo import apcer_at_bpcer, bootstrap

    first = next(iter(table.values()))
    y_all = np.concatenate([first[k][1] for k in (first if directions is None else directions)])
    print(f"\n## {name}: {int((y_all == 0).sum())} bona fide, {int(y_all.sum())} silicone (synthetic rig)\n")
    print("| features | dims | ridge per held-out seed | silicone AUC [95%] | APCER at BPCER 5% [95%] |\n|---|---|---|---|---|")
    for group, by_seed in table.items():
        score, y, ridges = held_out(by_seed, directions)
        species = np.where(y == 1, "flexible_mask", "bona_fide")
        a = _auc(score, y)
        ap = apcer_at_bpcer(score, y, species)[1]["flexible_mask"]
        (alo, ahi), (plo, phi) = bootstrap(score, y, species, resamples)["flexible_mask"]
        dims = next(iter(by_seed.values()))[0].shape[1]
        print(f"| {group} | {dims} | {', '.join(f'{r:g}' for r in ridges)} | {a:.3f} [{alo:.3f}, {ahi:.3f}] | "
              f"{100 * ap:.1f}% [{100 * plo:.1f}, {100 * phi:.1f}] |", flush=True)


def groups(fine_grid: int | None = None) -> tuple[str, ...]:
    """GROUPS, with depth and near-IR pooled to fine_grid x fine_grid as two more groups where one is given."""
    return GROUPS + ((f"pixels_depth@{fine_grid}", f"pixels_ir@{fine_grid}") if fine_grid else ())


def seed_features(domain: str, seed: int, per_species: int, workers: int, size, params, model, fresh,
                  framing: str = "detector", fine_grid: int | None = None) -> dict:
    """{group: (features, label: 1 silicone, 0 bona fide)} of one range set's scenes at one rig seed."""
    jobs = [(domain, seed, species, i, *size, params, framing) for species in ("bona_fide", "flexible_mask")
            for i in range(per_species)]
    with Pool(workers) as pool:
        crops = pool.map(_crop, jobs, chunksize=8)
    kept = [(c, int(j[2] == "flexible_mask")) for c, j in zip(crops, jobs) if c is not None]
    y = np.array([k[1] for k in kept])
    crops = [k[0] for k in kept]
    trained, random = features(model, crops), features(fresh, crops)
    out, pooled_by_grid = {}, {}
    for g in groups(fine_grid):
        if g.startswith("pixels"):
            out[g] = (pixel_group(crops, g, pooled_by_grid), y)
        elif g.startswith("random "):
            out[g] = (random[g.split(" ", 1)[1]], y)
        else:
            out[g] = (trained[g], y)
    where = {"detector": "the detector's box", "truth": "the rig's true face box",
             "metric": "the detector's centre, sized by the face's depth",
             "silhouette": "the head's outline in depth across, the detector's centre down, sized by the face's "
                           "depth"}[framing]
    print(f"{domain} seed {seed}: {len(y)} crops ({int(y.sum())} silicone), framed at {where}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a spoof_trace checkpoint (.pt) whose features are probed")
    ap.add_argument("--model", required=True, help="an artifact whose preprocessing cuts the crops (its manifest)")
    ap.add_argument("--sets", default="rand,rand_heldout", help="range sets of the randomised family")
    ap.add_argument("--seeds", default="302,303", help="two or more rig seeds: each probe is fitted on one, scored "
                                                      "on the other")
    ap.add_argument("--transfer", metavar="FIT:SCORE", help="instead: fit each probe on range set FIT at the first "
                    "seed and score it on range set SCORE at the second (does a read-out learnt on one range set "
                    "carry to another, as a head trained on the training ranges must?)")
    ap.add_argument("--per-species", type=int, default=500, help="bona fide and silicone scenes per seed")
    ap.add_argument("--framing", choices=("detector", "truth", "metric", "silhouette"), default="detector",
                    help="where each crop is cut: the face detector's box, as the product and the training cache cut "
                         "it (default); the rig's true face box, which aligns faces more exactly than any detector "
                         "and lets a probe read silicone no deployed model is shown (the eighteenth session's figures); "
                         "or metric: the detector's centre with a side set by the face's measured depth (the "
                         "product's preprocessing framing 'metric', edge_fas.preprocess.framed_box); or silhouette: "
                         "metric's square moved sideways onto the head's outline in depth (framing 'silhouette')")
    ap.add_argument("--fine-grid", type=int, default=None, metavar="N",
                    help="also probe depth and near-IR alone pooled to N x N, N from 2 to 64 (one stream's N*N "
                         "cells: above 40 the logistic fit, an N^2-sized system, is slow)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="640x480", help="the rig's frame size (the recipe's data.rig_size)")
    args = ap.parse_args()
    if args.fine_grid is not None and not 2 <= args.fine_grid <= 64:
        ap.error(f"--fine-grid {args.fine_grid}: a grid of 2 to 64 cells a side (32 doubles the family head's 16)")

    import torch
    from bench_silicone_matched import refuse_benchmark_seed

    from edge_fas.artifact import load_artifact
    from edge_fas.models import build
    from edge_fas.models.checkpoint import load_checkpoint
    from edge_fas.preprocess import PreprocessParams

    params = PreprocessParams.from_dict(load_artifact(args.model).manifest["preprocess"])
    model, info = load_checkpoint(args.checkpoint)
    if info["name"] != "spoof_trace":
        raise SystemExit(f"{args.checkpoint} is a {info['name']} checkpoint; this probe reads spoof_trace's features")
    torch.manual_seed(0)
    fresh = build(info["name"], info["preset"], **info["config"]).eval()
    size = tuple(int(v) for v in args.size.split("x"))
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.transfer:
        fit_set, score_set = (v.strip() for v in args.transfer.split(":"))
        refuse_benchmark_seed(fit_set, seeds[0])
        refuse_benchmark_seed(score_set, seeds[1])
        fit = seed_features(fit_set, seeds[0], args.per_species, args.workers, size, params, model, fresh, args.framing,
                            args.fine_grid)
        scored = seed_features(score_set, seeds[1], args.per_species, args.workers, size, params, model, fresh,
                               args.framing, args.fine_grid)
        report(f"fitted on {fit_set} (rig seed {seeds[0]}), scored on {score_set} (rig seed {seeds[1]})",
               {g: {0: fit[g], 1: scored[g]} for g in groups(args.fine_grid)}, directions=(1,))
        return 0
    for domain in [s.strip() for s in args.sets.split(",")]:
        for seed in seeds:
            refuse_benchmark_seed(domain, seed)
        by_seed = {seed: seed_features(domain, seed, args.per_species, args.workers, size, params, model, fresh,
                                          args.framing, args.fine_grid)
                   for seed in seeds}
        report(f"{domain}, rig seeds {args.seeds}",
               {g: {seed: by_seed[seed][g] for seed in seeds} for g in groups(args.fine_grid)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
