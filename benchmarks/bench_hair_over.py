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

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rig_probe import Probe, arguments, auc_lower, regions, rho, row_bands, scene_indices  # noqa: E402

HAIR_ENDS = (0.10, 0.55)


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    probe = Probe(args.set)
    rigs = {"drawn": probe.rig()}
    for h in HAIR_ENDS:
        rigs[h] = probe.rig({"identity.hair_ir": h})
    rigs["covered"], rigs["in front"] = probe.rig({"mask.hair_over": 0.0}), probe.rig({"mask.hair_over": 1.0})
    r = regions(probe.params.size)

    conditions = {"bona fide, hair 0.10": (HAIR_ENDS[0], "bona_fide"),
                  "bona fide, hair 0.55": (HAIR_ENDS[1], "bona_fide"), "bona fide, as drawn": ("drawn", "bona_fide"),
                  "silicone, hair out of sight": ("covered", "flexible_mask"),
                  "silicone, all hair in front": ("in front", "flexible_mask"),
                  "silicone, as drawn": ("drawn", "flexible_mask")}
    diffs, spread, drawn = [], {k: [] for k in conditions}, []
    for i in scene_indices(args.scenes):
        crops = {k: probe.ir_crop(rigs[rig], species, i) for k, (rig, species) in conditions.items()}
        if any(c is None for c in crops.values()):
            continue
        diffs.append(np.abs(crops["bona fide, hair 0.55"] - crops["bona fide, hair 0.10"]))
        for k, c in crops.items():
            spread[k].append(float(c[r["upper"]].std()))
        ident = probe.identity(i)
        drawn.append((ident.hair_ir, ident.skin_ir))
    m = np.stack(diffs).mean(0)
    drawn = np.array(drawn)
    print(probe.header(len(diffs)))
    print(f"Where hair reflectance {HAIR_ENDS[0]} -> {HAIR_ENDS[1]} changes a bona fide crop (mean |change|):")
    for name, mask in (("whole crop", np.ones_like(r["face"])), ("face ellipse", r["face"]),
                       ("upper half of the ellipse", r["upper"]),
                       ("central square (face_log's reference)", r["centre"]), ("outside the ellipse", ~r["face"])):
        print(f"  {name:40s} {m[mask].mean():.3f}")
    print("  by 16-px row band, top to bottom:      " + row_bands(m))
    print("\n| condition | upper-face near-IR spread, mean [quartiles] | rho with hair_ir | rho with skin_ir |")
    print("|---|---|---|---|")
    for key, v in spread.items():
        v = np.array(v)
        print(f"| {key} | {v.mean():.3f} [{np.percentile(v, 25):.3f}, {np.percentile(v, 75):.3f}] | "
              f"{rho(drawn[:, 0], v):+.2f} | {rho(drawn[:, 1], v):+.2f} |")
    print()
    for sil in ("silicone, hair out of sight", "silicone, all hair in front", "silicone, as drawn"):
        print(f"AUC of 'a flatter upper face is a mask', bona fide as drawn against {sil}: "
              f"{auc_lower(spread[sil], spread['bona fide, as drawn']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
