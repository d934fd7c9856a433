"""How much of the emitter's projected pattern shows on a face in the synthetic rig's near-IR frames, and does
its sharpness tell silicone masks from skin? A data audit of the randomised rig, no network involved.

    .venv/bin/python benchmarks/bench_dot_contrast.py [--seed 24] [--per-species 150] [--sets rand,rand_heldout]

The rig blurs a projected dot in scattering materials (edge_fas/sim/randomized.py): fully in skin
(`ir.scatter_px`), by a share in silicone (`silicone.scatter`, 0.5-0.9 of skin's), little in paper or resin, not
at all on the wall. So a silicone mask should show its dots sharper than skin does. The model's crops (64-128 px
of a face that is 100-250 px wide in the IR frame) cannot resolve 1-2 px dots, so this measures at the IR
imager's own resolution, before registration and cropping: the ceiling of the cue, not what a model sees.

For each scene it renders the frame with the emitter on and, at the same instant, off (RealSense can alternate
its emitter frame by frame), and measures the fine near-IR modulation (band-pass, Gaussian sigma 0.5 minus 1.5
px, over the local level, sigma 5 px) in the middle 40% of the true face box (the colour box scaled to the IR
frame: the IR imager's offset from the colour camera is ignored, which the central patch tolerates) and on the
wall behind (farther than the face by 0.3 m, within two face widths):
- on: the modulation's std in the emitter-on frame (skin texture, noise and the pattern);
- return: the same of the emitter's return alone, the on frame minus the off frame (the pattern times the
  surface's near-IR texture, with the noise of both frames);
- / wall: return on the face over return on the wall, the same camera's dots seen unblurred: it cancels the
  emitter's contrast and dot size, which differ between cameras far more than between materials.
It prints, per range set and emitter kind (flood and off project no pattern), each species' median return
modulation, and the AUC of "sharper is an attack" for silicone against bona fide with a 95% bootstrap interval.
Synthetic rig only: it says what the rig renders, nothing about real silicone at 850 nm.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECIES = ("bona_fide", "flexible_mask", "print")
MEASURES = ("on", "return", "/ wall")


def modulation(ir: np.ndarray) -> np.ndarray:
    """Fine near-IR contrast relative to the local level: the scale of a projected dot, blind to gain."""
    img = ir.astype(np.float32)
    band = cv2.GaussianBlur(img, (0, 0), 0.5) - cv2.GaussianBlur(img, (0, 0), 1.5)
    return band / np.maximum(cv2.GaussianBlur(img, (0, 0), 5.0), 2.0)


def fine_contrast(ir: np.ndarray, where: np.ndarray) -> float:
    """Std of the modulation over the pixels `where` that are lit (> 5 of 255); NaN below 50 such pixels."""
    ok = where & (ir > 5)
    return float(modulation(ir)[ok].std()) if ok.sum() >= 50 else float("nan")


def emitter_return(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """The emitter's light alone: the on frame minus the off frame, where neither is saturated (else 0)."""
    ret = np.clip(on.astype(np.float32) - off.astype(np.float32), 0, None)
    return np.where((on < 250) & (off < 250), ret, 0.0).astype(np.float32)


def measure(rig, species: str, index: int) -> tuple[str, list[float]]:
    """(emitter kind, [on, return, return / wall return]) of one scene."""
    on = rig.render(species, index, t=0.0)
    off = rig.render(species, index, t=0.0, emitter_on=False)
    h, w = on.ir.shape[:2]
    scale = w / on.rgb.shape[1]
    x0, y0, x1, y1 = (v * scale for v in on.truth.face_box)
    cx, cy, fw, fh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    face = np.zeros((h, w), bool)
    face[max(0, int(cy - 0.2 * fh)):int(cy + 0.2 * fh), max(0, int(cx - 0.2 * fw)):int(cx + 0.2 * fw)] = True
    z = on.depth.astype(np.float32) * np.float32(on.depth_scale)
    near = z[face & (z > 0)]
    wall = np.zeros((h, w), bool)
    wall[max(0, int(cy - 1.5 * fh)):int(cy + 1.5 * fh), max(0, int(cx - 2 * fw)):int(cx + 2 * fw)] = True
    wall &= z > (float(np.median(near)) + 0.3 if near.size else np.inf)
    ret = emitter_return(on.ir, off.ir)
    face_return, wall_return = fine_contrast(ret, face), fine_contrast(ret, wall)
    ratio = face_return / wall_return if wall_return > 1e-3 else float("nan")
    return rig.camera(index).params["emitter.pattern"], [fine_contrast(on.ir, face & (on.ir < 250)), face_return, ratio]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=24, help="rig seed (24: one no model or diagnostic was looked at on)")
    ap.add_argument("--per-species", type=int, default=150)
    ap.add_argument("--sets", default="rand,rand_heldout")
    args = ap.parse_args()

    from edge_fas.metrics import auc, auc_interval
    from edge_fas.sim import make_rig

    print(f"synthetic rig, seed {args.seed}, 640x480, {args.per_species} scenes per species and set; fine near-IR "
          "modulation in the IR frame (see the docstring); AUC of 'sharper is an attack', silicone against bona fide")
    for name in args.sets.split(","):
        start = time.time()
        rig = make_rig(name, seed=args.seed, width=640, height=480)
        kinds, species, rows = [], [], []
        for sp in SPECIES:
            for i in range(args.per_species):
                kind, row = measure(rig, sp, i)
                kinds.append(kind), species.append(sp), rows.append(row)
        kinds, species, table = np.array(kinds), np.array(species), np.array(rows)
        print(f"\n{name} ({time.time() - start:.0f} s)")
        print(f"  {'emitter':11s} {'n':>4s}  median return: " + " ".join(f"{s:>13s}" for s in SPECIES)
              + "".join(f"   AUC {m:7s} [95%]    " for m in MEASURES))
        for kind in ("all", *sorted(set(kinds))):
            sel = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
            medians = [np.nanmedian(table[sel & (species == sp), 1]) if (sel & (species == sp)).any() else np.nan
                       for sp in SPECIES]
            cells = []
            for k in range(len(MEASURES)):
                pair = sel & np.isin(species, ("bona_fide", "flexible_mask")) & np.isfinite(table[:, k])
                label = (species[pair] == "flexible_mask").astype(int)
                if len(set(label)) < 2:
                    cells.append(f"{'-':>30s}")
                    continue
                lo, hi = auc_interval(table[pair, k], label)
                cells.append(f"   {auc(table[pair, k], label):.3f} [{lo:.2f}, {hi:.2f}] ({pair.sum():3d})")
            print(f"  {kind:11s} {sel.sum() // len(SPECIES):4d}  {'':15s}" + " ".join(f"{v:13.3f}" for v in medians)
                  + "".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
