"""Does the synthetic rig let a worn mask be told from skin by the wearer's hair? A rig-side check of one
shortcut, no model involved.

    .venv/bin/python benchmarks/bench_hair_over.py [--set rand_test] [--scenes 48]

`bench_demo.py --factors` found bona fide rejections going with drawn hair reflectance at 850 nm
(`identity.hair_ir`). A worn mask used to replace the wearer's forehead hair with its own material, so the
fringe's near-IR contrast was the mask's, not the hair's. This renders, for each of N scenes (every 8th sample
index of the range set at rig seed 11, 640x480), the bona fide face with its hair reflectance set to 0.10 and
to 0.55 (the ends of the range; the rest of the scene as drawn) and the same identity's silicone mask with the
wearer's hair kept out of sight (`mask.hair_over` 0: the rig before the factor existed), all of it in front
(1) and as drawn (0-1). Every crop is cut at the true face box and normalised as the demo candidates see it
(128 px, `ir_norm: face_log`). It prints:
- where a change of hair reflectance reaches the crop (mean absolute change by region and by row band);
- the near-IR spread (std) over the upper half of the face ellipse, per condition, with its quartiles;
- Spearman's rho of that spread with the drawn hair and skin reflectances, for bona fide and for silicone;
- the AUC of "a flatter upper face is a silicone mask" (bona fide and silicone as drawn).
A cue a mask does not change (the wearer's hair) should go with hair reflectance equally for both, and
should not separate them. Synthetic rig only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HAIR_ENDS = (0.10, 0.55)


def rank(a):
    return np.argsort(np.argsort(a)).astype(float)


def rho(a, b) -> float:
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


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
    rigs = {"drawn": RandomizedRig(args.set, seed=11, ranges=base)}
    for h in HAIR_ENDS:
        rigs[h] = RandomizedRig(args.set, seed=11, ranges=base.with_overrides(args.set, {"identity.hair_ir": (h, h)}))
    for name, v in (("covered", 0.0), ("in front", 1.0)):
        rigs[name] = RandomizedRig(args.set, seed=11, ranges=base.with_overrides(args.set, {"mask.hair_over": (v, v)}))

    def ir_crop(rig, species, index):
        fr = rig.render(species, index, 0.0)
        if fr.truth is None or fr.truth.face_box is None:
            return None
        return finish(face_source(register(fr), fr.truth.face_box, params), params).ir[0]

    n = params.size
    yy, xx = np.mgrid[0:n, 0:n]
    # the face as the 1.4x crop frames it
    ellipse = ((xx - n / 2) / (n / 2.8)) ** 2 + ((yy - n / 2) / (n / 2.8)) ** 2 <= 1
    upper = ellipse & (yy < n / 2)
    centre = np.zeros((n, n), bool)
    centre[n // 4:3 * n // 4, n // 4:3 * n // 4] = True

    diffs, spread, drawn = [], {k: [] for k in ("bona fide, hair 0.10", "bona fide, hair 0.55", "bona fide, as drawn",
                                                "silicone, hair out of sight", "silicone, all hair in front",
                                                "silicone, as drawn")}, []
    for i in (8 * k for k in range(args.scenes)):
        crops = [ir_crop(rigs[HAIR_ENDS[0]], "bona_fide", i), ir_crop(rigs[HAIR_ENDS[1]], "bona_fide", i),
                 ir_crop(rigs["drawn"], "bona_fide", i), ir_crop(rigs["covered"], "flexible_mask", i),
                 ir_crop(rigs["in front"], "flexible_mask", i), ir_crop(rigs["drawn"], "flexible_mask", i)]
        if any(c is None for c in crops):
            continue
        diffs.append(np.abs(crops[1] - crops[0]))
        for key, c in zip(spread, crops):
            spread[key].append(float(c[upper].std()))
        ident = draw_scene(base, 11, "bona_fide", i).identity
        drawn.append((ident.hair_ir, ident.skin_ir))
    m = np.stack(diffs).mean(0)
    drawn = np.array(drawn)
    print(f"{args.set}, rig seed 11, {len(diffs)} scenes at 640x480; 128 px face_log near-IR crops (units of 0.5 ln)\n")
    print(f"Where hair reflectance {HAIR_ENDS[0]} -> {HAIR_ENDS[1]} changes a bona fide crop (mean |change|):")
    for name, mask in (("whole crop", np.ones((n, n), bool)), ("face ellipse", ellipse),
                       ("upper half of the ellipse", upper), ("central square (face_log's reference)", centre),
                       ("outside the ellipse", ~ellipse)):
        print(f"  {name:40s} {m[mask].mean():.3f}")
    print("  by 16-px row band, top to bottom:      " + " ".join(f"{m[y:y + 16].mean():.2f}" for y in range(0, n, 16)))
    print("\n| condition | upper-face near-IR spread, mean [quartiles] | rho with hair_ir | rho with skin_ir |")
    print("|---|---|---|---|")
    for key, v in spread.items():
        v = np.array(v)
        print(f"| {key} | {v.mean():.3f} [{np.percentile(v, 25):.3f}, {np.percentile(v, 75):.3f}] | "
              f"{rho(drawn[:, 0], v):+.2f} | {rho(drawn[:, 1], v):+.2f} |")
    for sil in ("silicone, hair out of sight", "silicone, all hair in front", "silicone, as drawn"):
        auc = float((np.array(spread[sil])[:, None] < np.array(spread["bona fide, as drawn"])[None, :]).mean())
        print(f"\nAUC of 'a flatter upper face is a mask', bona fide as drawn against {sil}: {auc:.3f}", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
