"""How well do simple physical measurements of the model's own crops tell silicone masks from skin? A data
audit on the synthetic rig, no network involved: a reference for what a network at least ought to extract.

    .venv/bin/python benchmarks/bench_silicone_cues.py --model runs/RUN/artifact \
        [--sets rand_heldout_val,rand_test] [--per-domain 900]

The rig's silicone mask differs from the skin under it in named, drawn ways (edge_fas/sim/presentations.py,
ranges in edge_fas/sim/ranges.py): its relief is the face's softened (`silicone.smooth_px`) and lifted by its
thickness, it keeps only part of the skin's near-IR texture (`silicone.ir_texture`), it reflects a share of
the skin's near-IR (`silicone.ir_ratio`), a projected dot spreads less in it (`silicone.scatter`), and its glued
edge shows. This reads the bona fide and silicone scenes of bench_demo.py's sets (the same scenes, seeds and
splits; from eval's crop cache, runs/cache, where the model was scored there) as the artifact's preprocessing
cuts them and measures, over the crop's central face region:

- ir_fine: std of near-IR minus its Gaussian blur (sigma 1.5 px), in the network's IR units;
- ir_spread: std of near-IR (the face's shading and texture; its level is normalised away);
- depth_fine: std of depth minus its Gaussian blur (sigma 2 px): fine relief a softened mask loses;
- depth_relief: 95th minus 5th percentile of depth (how far the nose stands out);
- rgb_fine: std of colour lightness minus its blur (sigma 1.5 px);
- ir_colour_slope, ir_colour_corr: how near-IR follows colour over the face's features (brows, eyes, lips):
  the regression slope and the correlation of band-passed near-IR (Gaussian sigma 1 minus sigma 4 px) on
  band-passed log colour lightness. Skin's near-IR texture follows its colour in the rig; a silicone mask keeps
  its pigment's colour features and only part of skin's near-IR texture, so its slope should be lower. Unlike
  ir_fine, this is relative to the face's own contrast, which differs between people.

It prints each measurement's AUC against bona fide (0.5: no cue; below 0.5: silicone lower), and all of them
combined by a logistic regression fitted on one rig seed of the set and scored on the other (both ways,
pooled), with APCER where BPCER is 5% and 95% bootstrap intervals. A network that scores below the
combination on the same scenes is not extracting what is there to extract; nothing here says what a real
camera would show.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CUES = ("ir_fine", "ir_spread", "depth_fine", "depth_relief", "rgb_fine", "ir_colour_slope", "ir_colour_corr")


def cues(crop, params) -> dict:
    """The measurements of one FaceCrop (model input: normalised rgb, depth and ir) over its central region;
    params: the PreprocessParams that normalised its colour (undone for the log lightness)."""
    s = crop.ir.shape[-1]
    c = slice(int(s * 0.25), int(s * 0.75))
    ir = crop.ir[0].astype(np.float32)
    depth = crop.depth[0].astype(np.float32)
    lum = crop.rgb.mean(0).astype(np.float32)
    fine = lambda a, sigma: (a - cv2.GaussianBlur(a, (0, 0), sigma))[c, c]  # noqa: E731
    band = lambda a: (cv2.GaussianBlur(a, (0, 0), 1.0) - cv2.GaussianBlur(a, (0, 0), 4.0))[c, c].ravel()  # noqa: E731
    centre_depth = depth[c, c]
    mean = np.asarray(params.rgb_mean, np.float32)[:, None, None]
    std = np.asarray(params.rgb_std, np.float32)[:, None, None]
    log_lum = np.log(np.clip((crop.rgb.astype(np.float32) * std + mean).mean(0), 1e-3, None))
    ir_band, lum_band = band(ir), band(log_lum)
    spread = float(ir_band.std() * lum_band.std())
    return {"ir_fine": float(fine(ir, 1.5).std()), "ir_spread": float(ir[c, c].std()),
            "depth_fine": float(fine(depth, 2.0).std()),
            "depth_relief": float(np.percentile(centre_depth, 95) - np.percentile(centre_depth, 5)),
            "rgb_fine": float(fine(lum, 1.5).std()),
            "ir_colour_slope": float((ir_band * lum_band).sum() / max(float((lum_band ** 2).sum()), 1e-9)),
            "ir_colour_corr": float(((ir_band - ir_band.mean()) * (lum_band - lum_band.mean())).mean() / spread)
            if spread > 0 else 0.0}


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2, steps: int = 50,
                 tol: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, weights with bias last) of an L2-regularised logistic regression by Newton's method; with `tol`,
    it stops once a step changes no weight by more than that (hundreds of features make each step costly)."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        grad = z.T @ (p - y) + ridge * np.r_[w[:-1], 0.0]
        hess = (z * (p * (1 - p))[:, None]).T @ z + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < tol:
            break
    return mu, sd, w


def logistic_score(model, x: np.ndarray) -> np.ndarray:
    mu, sd, w = model
    return np.hstack([(x - mu) / sd, np.ones((len(x), 1))]) @ w


def read_set(name: str, per_domain: int, params) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{rig seed: (cue matrix, label: 1 silicone, 0 bona fide)} for a bench_demo set's scenes."""
    from bench_demo import randomised_set, scene_crops, scored_scenes

    from edge_fas.data.source import finish

    domain, seeds, split = randomised_set(name)
    out = {}
    for seed in seeds:
        samples = [s for s in scored_scenes(domain, seed, split, per_domain) if s.species in ("bona_fide", "flexible_mask")]
        ds = scene_crops(samples, params, name)
        rows, labels = [], []
        for i, sample in enumerate(samples):
            src = ds.source(i)
            if src is None or src.ir is None or src.depth is None:
                continue
            c = cues(finish(src, params), params)
            rows.append([c[k] for k in CUES])
            labels.append(int(sample.species == "flexible_mask"))
        out[seed] = (np.array(rows), np.array(labels))
        print(f"{name} seed {seed}: {labels.count(0)} bona fide, {sum(labels)} silicone", flush=True)
    return out


def report(name: str, by_seed: dict, resamples: int = 1000) -> None:
    from bench_demo import apcer_at_bpcer, bootstrap, species_auc  # the conventions of every bench_demo table

    from edge_fas.metrics import auc

    x = np.vstack([v[0] for v in by_seed.values()])
    y = np.concatenate([v[1] for v in by_seed.values()])
    print(f"\n## {name}: {int((y == 0).sum())} bona fide, {int(y.sum())} silicone (synthetic rig)\n")
    print("| measurement | AUC silicone against bona fide (below 0.5: silicone lower) |\n|---|---|")
    for j, k in enumerate(CUES):
        print(f"| {k} | {auc(x[:, j], y):.3f} |")
    seeds = list(by_seed)
    if len(seeds) < 2:
        print("\n(one rig seed: no held-out combination)")
        return
    held = []  # each seed scored by the regression fitted on the other(s)
    for s in seeds:
        train = [t for t in seeds if t != s]
        model = fit_logistic(np.vstack([by_seed[t][0] for t in train]), np.concatenate([by_seed[t][1] for t in train]))
        held.append((logistic_score(model, by_seed[s][0]), by_seed[s][1]))
    score = np.concatenate([h[0] for h in held])
    label = np.concatenate([h[1] for h in held])
    species = np.where(label == 1, "flexible_mask", "bona_fide")
    a, ap = species_auc(score, label, species)["flexible_mask"], apcer_at_bpcer(score, label, species)[1]["flexible_mask"]
    (alo, ahi), (plo, phi) = bootstrap(score, label, species, resamples)["flexible_mask"]
    print(f"\nAll {len(CUES)}, logistic regression fitted on one seed and scored on the other: AUC {a:.3f} [{alo:.3f}, "
          f"{ahi:.3f}], APCER at BPCER 5% {100 * ap:.1f}% [{100 * plo:.1f}, {100 * phi:.1f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an artifact whose preprocessing cuts the crops (its manifest)")
    ap.add_argument("--sets", default="rand_heldout_val,rand_test")
    ap.add_argument("--per-domain", type=int, default=900, help="bench_demo's --per-domain")
    args = ap.parse_args()

    from edge_fas.artifact import load_artifact
    from edge_fas.preprocess import PreprocessParams

    params = PreprocessParams.from_dict(load_artifact(args.model).manifest["preprocess"])
    for name in args.sets.split(","):
        report(name, read_set(name.strip(), args.per_domain, params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
