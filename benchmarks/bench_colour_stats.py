"""Does a crop's overall colour tell attacks from bona fide in a training config's data, and does it follow
the wearer's skin tone? A data audit, no model involved.

    .venv/bin/python benchmarks/bench_colour_stats.py --config runs/RUN/config.yaml [--split train] [--limit N]
    .venv/bin/python benchmarks/bench_colour_stats.py --scores runs/bench-RUN/rand_test [--per-domain 900]

A model learns any cue that separates the labels in its training data. If attacks are on average lighter or
less saturated than bona fide, and lightness and saturation also follow the skin tone of the person in front
of the camera, a model that uses them rejects light-skinned people more often and passes masks worn by
dark-skinned people more easily, whatever the camera. This reads the config's samples (from its crop cache
where they are cached, else decoded; synthetic sources also get each sample's drawn visible skin tone) as
the model would see them without augmentation (the config's own `data.preprocess`), and prints for each
statistic of the colour crop's central face region (the region `rgb_norm: face` averages):

- the AUC with which the statistic alone separates each attack species from bona fide (0.5: no cue;
  above: attacks higher; below: attacks lower);
- Spearman's rho with the drawn visible skin tone over bona fide (synthetic rig only);
- the mean for bona fide and for attacks within thirds of skin tone.

With --scores (a set folder that benchmarks/bench_demo.py wrote, with its pooled_scores.csv) it reads the
same statistics for that set's scenes (from eval's crop cache, runs/cache) and says which of them a model's
bona fide scores follow: Spearman's rho of the score with each statistic and with the drawn skin tone, and
the partial rank correlations (statistic given tone, tone given statistic), so a cue that stands in for skin
tone can be told from skin tone itself.

Statistics: lightness (mean of R, G, B), saturation (mean HSV saturation), contrast (std of lightness) and
red/blue ratio, each on the crop un-normalised back to [0, 1], and surround: the mean lightness of the rest
of the crop (hair, ears, background) minus the face region's. With `rgb_norm: face` the network never sees
lightness or cast; contrast and surround are what is left of them.
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

SPECIES = ("flexible_mask", "rigid_mask", "paper_mask", "print", "replay", "partial")
STATS = ("lightness", "saturation", "contrast", "red/blue", "surround")


def auc(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) + P(a = b) / 2 for a drawn from a, b from b."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float((a > b).mean() + 0.5 * (a == b).mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def colour_stats(rgb_01: np.ndarray) -> dict:
    """The statistics of one 3 x S x S colour crop in [0, 1] over its central face region."""
    s = rgb_01.shape[-1]
    c0, c1 = int(s * 0.25), int(s * 0.75)
    centre = np.ascontiguousarray(np.moveaxis(rgb_01[:, c0:c1, c0:c1], 0, -1), np.float32)
    lum = centre.mean(-1)
    hsv = cv2.cvtColor(centre, cv2.COLOR_RGB2HSV)
    outside = np.ones((s, s), bool)
    outside[c0:c1, c0:c1] = False
    return {"lightness": float(lum.mean()), "saturation": float(hsv[..., 1].mean()), "contrast": float(lum.std()),
            "red/blue": float((centre[..., 0].mean() + 1e-3) / (centre[..., 2].mean() + 1e-3)),
            "surround": float(rgb_01.mean(0)[outside].mean() - lum.mean())}


def skin_tone(sample) -> float:
    """The drawn visible skin tone of a randomised-rig sample's identity (nan for any other sample)."""
    if getattr(sample, "ranges", None) is None:
        return float("nan")
    from edge_fas.sim.randomized import draw_scene

    return float(draw_scene(sample.ranges, sample.seed, sample.species, sample.index).identity.skin_tone)


def partial_rho(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman's rho of x and y with z's (linear, rank) part removed from both."""
    rx, ry, rz = (np.argsort(np.argsort(a)).astype(float) for a in (x, y, z))
    ex, ey = (r - np.polyval(np.polyfit(rz, r, 1), rz) for r in (rx, ry))
    return float(np.corrcoef(ex, ey)[0, 1])


def scored_set(folder: Path, per_domain: int):
    """(species, tone, stats) rows for a bench_demo set folder's scenes, in its pooled_scores.csv order, and
    the scores."""
    import csv
    import json

    from bench_demo import check_rendered_by_this_rig, randomised_set, scene_crops, scored_scenes

    from edge_fas.artifact import load_artifact
    from edge_fas.preprocess import PreprocessParams

    try:
        domain, seeds, split = randomised_set(folder.name)
    except SystemExit as e:
        raise SystemExit(f"--scores {folder}: {e}") from None
    check_rendered_by_this_rig(folder)
    rows_csv = list(csv.DictReader(open(folder / "pooled_scores.csv")))
    samples = [s for seed in seeds for s in scored_scenes(domain, seed, split, per_domain)]
    if [s.species for s in samples] != [r["species"] for r in rows_csv]:
        raise SystemExit(f"{folder}: its scores are not {domain} {split} seeds {seeds} at --per-domain {per_domain}")
    model = json.loads((folder / f"seed{seeds[0]}" / "metrics.json").read_text())["meta"]["model"]
    params = PreprocessParams.from_dict(load_artifact(model).manifest["preprocess"])  # the crops eval cut
    ds = scene_crops(samples, params, str(folder))
    rows, kept = crop_rows(samples, ds, params)
    scores = [float(rows_csv[i]["score"]) for i in kept]
    return rows, np.array(scores)


def score_report(rows, scores: np.ndarray) -> None:
    bona = np.array([r[0] == "bona_fide" for r in rows])
    tone = np.array([r[1] for r in rows])[bona]
    s = scores[bona]
    print(f"\n{bona.sum()} bona fide: what their scores follow (Spearman rho; partial: the other held fixed)\n")
    print(f"- skin tone: rho {spearman(s, tone):+.2f}")
    for k in STATS:
        v = np.array([r[2][k] for r in rows])[bona]
        print(f"- {k}: rho {spearman(s, v):+.2f}; given skin tone {partial_rho(s, v, tone):+.2f}; "
              f"skin tone given {k} {partial_rho(s, tone, v):+.2f}")


def crop_rows(samples, ds, params, progress: bool = False) -> tuple[list, list[int]]:
    """(species, skin tone, colour_stats) of each sample's colour crop at model size, un-normalised back to
    [0, 1] (what the camera gave, whatever the model's rgb_norm), and the indices of the samples kept (those
    with a face and colour)."""
    from edge_fas.data.source import finish
    from edge_fas.preprocess import PreprocessParams

    plain = PreprocessParams.from_dict({**params.to_dict(), "rgb_norm": "imagenet"})
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (plain.rgb_mean, plain.rgb_std))
    rows, kept = [], []
    for i, sample in enumerate(samples):
        src = ds.source(i)
        if src is not None and src.rgb is not None:
            rgb = np.clip(finish(src, plain).rgb * std + mean, 0.0, 1.0)
            rows.append((sample.species, skin_tone(sample), colour_stats(rgb)))
            kept.append(i)
        if progress and (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(samples)}", flush=True)
    return rows, kept


def collect(config: str, split: str, limit: int | None):
    from edge_fas.data.build import split_index
    from edge_fas.data.stream import StreamDataset
    from edge_fas.training import load_train_config, model_input_size
    from edge_fas.training.config import data_params, init_from_preprocess
    from edge_fas.training.data import open_cache

    cfg = load_train_config(config)
    size = model_input_size(cfg)
    params = data_params(cfg, size, init_from_preprocess(cfg))[0]  # as training cuts the crops
    index = split_index(cfg["data"], split)
    ds = StreamDataset(index, params, cache=open_cache(cfg), augment=False)
    n = len(ds) if not limit else min(limit, len(ds))
    print(f"{config}: {split} split, {n} of {len(ds)} samples, {size} px, rgb_norm {params.rgb_norm}", flush=True)
    return crop_rows([index.sample(i) for i in range(n)], ds, params, progress=True)[0]


def report(rows) -> None:
    species = np.array([r[0] for r in rows])
    tone = np.array([r[1] for r in rows])
    values = {k: np.array([r[2][k] for r in rows]) for k in STATS}
    bona = species == "bona_fide"
    present = [s for s in SPECIES if (species == s).any()]
    print(f"\n{bona.sum()} bona fide, {(~bona).sum()} attacks\n")
    print("| statistic | " + " | ".join(present) + " | all attacks | rho with skin tone (bona fide) |")
    print("|---" * (len(present) + 3) + "|")
    for k in STATS:
        v = values[k]
        rho = spearman(v[bona], tone[bona]) if np.isfinite(tone[bona]).all() else float("nan")
        print(f"| {k} (AUC, attacks higher) | " + " | ".join(f"{auc(v[species == s], v[bona]):.3f}" for s in present)
              + f" | {auc(v[~bona], v[bona]):.3f} | {rho:+.2f} |")
    if not np.isfinite(tone).all():
        return
    lo, hi = np.quantile(tone, [1 / 3, 2 / 3])
    print("\nMeans within thirds of visible skin tone (bona fide / attacks):")
    for name, sel in (("darkest", tone <= lo), ("middle", (tone > lo) & (tone <= hi)), ("lightest", tone > hi)):
        print(f"- {name} third: " + "; ".join(f"{k} {values[k][bona & sel].mean():.3f} / {values[k][~bona & sel].mean():.3f}"
                                             for k in STATS))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="a training config (a run's config.yaml)")
    ap.add_argument("--scores", type=Path, help="a bench_demo.py set folder (e.g. runs/bench-RUN/rand_test)")
    ap.add_argument("--per-domain", type=int, default=300, help="bench_demo's --per-domain for --scores")
    ap.add_argument("--split", default="train", choices=("train", "val", "test"))
    ap.add_argument("--limit", type=int, default=0, help="the first N samples only (default: all)")
    args = ap.parse_args()
    if bool(args.config) == bool(args.scores):
        ap.error("give one of --config and --scores")
    if args.scores:
        rows, scores = scored_set(args.scores, args.per_domain)
        report(rows)
        score_report(rows, scores)
    else:
        report(collect(args.config, args.split, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
