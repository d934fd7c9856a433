"""Why darker skin in near-IR could be judged an attack: a rig-side check, no model involved.

    .venv/bin/python benchmarks/bench_skin_level.py [--set rand_test] [--scenes 48]

`bench_demo.py --factors` found bona fide faces rejected more often the less their skin reflects at 850 nm
(`identity.skin_ir`). A silicone mask reflects a fraction of its wearer's skin (`silicone.ir_ratio`), so after
`face_log` normalisation (which divides by the face's own level) a mask's surroundings (hair, clothes, wall)
look brighter against the face, and so do a darker-skinned person's. This renders N scenes (every 8th sample
index of the range set at rig seed 11, 640x480): the bona fide face with its skin reflectance set to 0.45
and to 0.75 (the ends of the range, the rest of the scene as drawn), as drawn, and the same identity's
silicone mask as drawn. Each is cut at the true face box, 128 px, `ir_norm: face_log`. It prints where the
skin's reflectance changes the crop, and for a few crop statistics: their mean under each condition,
Spearman's rho with the drawn skin reflectance over the bona fide faces, and the AUC with which the
statistic alone tells silicone from bona fide. Synthetic rig only: whether real silicone is darker than
real skin at 850 nm by less than people differ is a property of real masks, not measured here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SKIN_ENDS = (0.45, 0.75)


def rank(a):
    return np.argsort(np.argsort(a)).astype(float)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="rand_test", help="range set of the randomised family")
    ap.add_argument("--scenes", type=int, default=48)
    args = ap.parse_args()

    from edge_fas.data.source import face_source, finish
    from edge_fas.data.synthetic import register
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.sim import get_ranges
    from edge_fas.sim.randomized import RandomizedRig, draw_scene

    params = PreprocessParams(size=128, depth_norm="plane_mm", ir_norm="face_log")
    base = get_ranges(args.set)
    # a degenerate range still draws, so every other factor of the scene stays as drawn
    rigs = {v: RandomizedRig(args.set, seed=11, ranges=base.with_overrides(args.set, {"identity.skin_ir": (v, v)}))
            for v in SKIN_ENDS}
    rigs["drawn"] = RandomizedRig(args.set, seed=11, ranges=base)

    n = params.size
    yy, xx = np.mgrid[0:n, 0:n]
    face = ((xx - n / 2) / (n / 2.8)) ** 2 + ((yy - n / 2) / (n / 2.8)) ** 2 <= 1  # as the 1.4x crop frames it
    inner = ((xx - n / 2) / (n / 4)) ** 2 + ((yy - n / 2) / (n / 4)) ** 2 <= 1
    statistics = {
        "surroundings' level (mean outside the face)": lambda ir: ir[~face].mean(),
        "darkest 5% of the face": lambda ir: np.percentile(ir[face], 5),
        "spread over the face": lambda ir: ir[face].std(),
        "spread over the inner face": lambda ir: ir[inner].std(),
    }

    def ir_crop(rig, species, index):
        fr = rig.render(species, index, 0.0)
        if fr.truth is None or fr.truth.face_box is None:
            return None
        return finish(face_source(register(fr), fr.truth.face_box, params), params).ir[0]

    conditions = (f"skin {SKIN_ENDS[0]}", f"skin {SKIN_ENDS[1]}", "bona fide as drawn", "silicone as drawn")
    values = {c: {s: [] for s in statistics} for c in conditions}
    diffs, skin = [], []
    for i in (8 * k for k in range(args.scenes)):
        crops = [ir_crop(rigs[SKIN_ENDS[0]], "bona_fide", i), ir_crop(rigs[SKIN_ENDS[1]], "bona_fide", i),
                 ir_crop(rigs["drawn"], "bona_fide", i), ir_crop(rigs["drawn"], "flexible_mask", i)]
        if any(c is None for c in crops):
            continue
        diffs.append(np.abs(crops[1] - crops[0]))
        for c, ir in zip(conditions, crops):
            for s, f in statistics.items():
                values[c][s].append(float(f(ir)))
        skin.append(draw_scene(base, 11, "bona_fide", i).identity.skin_ir)
    m = np.stack(diffs).mean(0)
    print(f"{args.set}, rig seed 11, {len(diffs)} scenes at 640x480; 128 px face_log near-IR crops (units of 0.5 ln)\n")
    print(f"Where skin reflectance {SKIN_ENDS[0]} -> {SKIN_ENDS[1]} changes a bona fide crop (mean |change|): "
          f"inner face {m[inner].mean():.3f}, face {m[face].mean():.3f}, outside the face {m[~face].mean():.3f}")
    print("  by 16-px row band, top to bottom: " + " ".join(f"{m[y:y + 16].mean():.2f}" for y in range(0, n, 16)))
    print("\n| statistic | " + " | ".join(conditions) + " | rho with skin_ir (bona fide as drawn) | "
          "AUC of 'silicone is lower' |")
    print("|---|" + "---|" * (len(conditions) + 2))
    for s in statistics:
        v = {c: np.array(values[c][s]) for c in conditions}
        rho = float(np.corrcoef(rank(skin), rank(v["bona fide as drawn"]))[0, 1])
        auc = float((v["silicone as drawn"][:, None] < v["bona fide as drawn"][None, :]).mean())
        print(f"| {s} | " + " | ".join(f"{v[c].mean():+.3f}" for c in conditions) + f" | {rho:+.2f} | {auc:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
