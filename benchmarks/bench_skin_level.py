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

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rig_probe import Probe, arguments, auc_lower, regions, rho, row_bands, scene_indices  # noqa: E402

SKIN_ENDS = (0.45, 0.75)


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    probe = Probe(args.set)
    rigs = {v: probe.rig({"identity.skin_ir": v}) for v in SKIN_ENDS}
    rigs["drawn"] = probe.rig()
    r = regions(probe.params.size)
    face, inner = r["face"], r["inner"]
    statistics = {
        "surroundings' level (mean outside the face)": lambda ir: ir[~face].mean(),
        "darkest 5% of the face": lambda ir: np.percentile(ir[face], 5),
        "spread over the face": lambda ir: ir[face].std(),
        "spread over the inner face": lambda ir: ir[inner].std(),
    }
    conditions = {f"skin {SKIN_ENDS[0]}": (SKIN_ENDS[0], "bona_fide"),
                  f"skin {SKIN_ENDS[1]}": (SKIN_ENDS[1], "bona_fide"), "bona fide as drawn": ("drawn", "bona_fide"),
                  "silicone as drawn": ("drawn", "flexible_mask")}
    values = {c: {s: [] for s in statistics} for c in conditions}
    diffs, skin = [], []
    for i in scene_indices(args.scenes):
        crops = {c: probe.ir_crop(rigs[rig], species, i) for c, (rig, species) in conditions.items()}
        if any(c is None for c in crops.values()):
            continue
        diffs.append(np.abs(crops[f"skin {SKIN_ENDS[1]}"] - crops[f"skin {SKIN_ENDS[0]}"]))
        for c, ir in crops.items():
            for s, f in statistics.items():
                values[c][s].append(float(f(ir)))
        skin.append(probe.identity(i).skin_ir)
    m = np.stack(diffs).mean(0)
    print(probe.header(len(diffs)))
    print(f"Where skin reflectance {SKIN_ENDS[0]} -> {SKIN_ENDS[1]} changes a bona fide crop (mean |change|): "
          f"inner face {m[inner].mean():.3f}, face {m[face].mean():.3f}, outside the face {m[~face].mean():.3f}")
    print("  by 16-px row band, top to bottom: " + row_bands(m))
    print("\n| statistic | " + " | ".join(conditions) + " | rho with skin_ir (bona fide as drawn) | "
          "AUC of 'silicone is lower' |")
    print("|---|" + "---|" * (len(conditions) + 2))
    for s in statistics:
        v = {c: np.array(values[c][s]) for c in conditions}
        print(f"| {s} | " + " | ".join(f"{v[c].mean():+.3f}" for c in conditions)
              + f" | {rho(skin, v['bona fide as drawn']):+.2f} | "
              f"{auc_lower(v['silicone as drawn'], v['bona fide as drawn']):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
