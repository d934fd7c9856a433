"""How much the face's absolute near-IR level tells silicone masks from skin on the synthetic rig, and what a
camera's per-frame metadata (IR gain, emitter power) or an emitter-off frame would add to it.

    .venv/bin/python benchmarks/bench_ir_level.py [--seed 13] [--per-species 150]

Both IR normalisations the models use (`crop`, `face_log`, edge_fas.preprocess) remove the level: they are
blind to gain, emitter power and distance, and so also to a silicone mask reflecting less than the skin it
covers. This measures what that costs. For each range set of the randomised family (rand: the training
ranges, rand_heldout, rand_test) it renders bona fide faces and silicone masks at 640x480 with the emitter on
and, at the same instant, off; registers IR to colour; and takes the median IR of the central face (the
middle 40% of the true face box). It prints the AUC of "darker is an attack", with a 95% bootstrap
interval, for:
- ceiling: the drawn reflectances themselves (skin `identity.skin_ir`, silicone `silicone.ir_ratio` x skin),
  the best any level cue could do on these ranges;
- raw: the level as the camera delivers it;
- metadata: raw / (IR gain x emitter power), what a camera reports per frame (the rig's auto-exposure already
  holds the emitter's return at the subject constant, so exposure adds nothing here);
- + response: also the IR response curve undone (`ir.gamma`: no camera reports it; an oracle);
- + ambient: also the emitter-off frame subtracted (the ambient near-IR; RealSense's emitter on/off
  alternation gives such a frame every other frame).
Synthetic rig only: nothing here says how far skin and silicone differ at 850 nm on real people and masks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CUES = ("ceiling", "raw", "metadata", "+ response", "+ ambient")


def face_level(frames, register) -> float:
    """Median IR of the middle 40% of the true face box (registered to colour); NaN when it has no IR."""
    ir = register(frames).ir
    x0, y0, x1, y1 = frames.truth.face_box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    patch = ir[int(cy - 0.2 * h):int(cy + 0.2 * h), int(cx - 0.2 * w):int(cx + 0.2 * w)].astype(np.float64)
    lit = patch[patch > 0]
    return float(np.median(lit)) if lit.size > 20 else float("nan")


def cues(rig, species: str, index: int, register) -> list[float]:
    on = rig.render(species, index, t=0.0)
    off = rig.render(species, index, t=0.0, emitter_on=False)
    p = on.meta["sim"]["scene"]
    albedo = rig.sample(species, index).identity.skin_ir * (p["silicone.ir_ratio"] if species != "bona_fide" else 1.0)
    raw, raw_off = face_level(on, register), face_level(off, register)
    linear = lambda v: 255.0 * (v / 255.0) ** (1.0 / p["ir.gamma"])  # noqa: E731  (the rig's LUT, inverted)
    per = p["ir.gain"] * p["emitter.power"]
    return [albedo, raw, raw / per, linear(raw) / per, (linear(raw) - linear(raw_off)) / per]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=13, help="rig seed (13: one no model or diagnostic was looked at on)")
    ap.add_argument("--per-species", type=int, default=150, help="samples of each of bona fide and silicone per set")
    ap.add_argument("--sets", default="rand,rand_heldout,rand_test")
    args = ap.parse_args()

    from edge_fas.calibration import register_to_color
    from edge_fas.metrics import auc, auc_interval
    from edge_fas.sim import make_rig

    print(f"synthetic rig, seed {args.seed}, 640x480, {args.per_species} bona fide and {args.per_species} silicone "
          "per set; AUC of 'darker is an attack' [95% bootstrap interval]")
    print(f"{'set':14s}" + "".join(f"{c:>22s}" for c in CUES))
    for name in args.sets.split(","):
        start = time.time()
        rig = make_rig(name, seed=args.seed, width=640, height=480)
        rows, labels = [], []
        for species in ("bona_fide", "flexible_mask"):
            for i in range(args.per_species):
                rows.append(cues(rig, species, i, register_to_color))
                labels.append(int(species != "bona_fide"))
        table, label = np.array(rows), np.array(labels)
        ok = np.isfinite(table).all(axis=1)  # a frame without IR at the face has no level
        cells = [(auc(-table[ok, k], label[ok]), *auc_interval(-table[ok, k], label[ok])) for k in range(len(CUES))]
        print(f"{name:14s}" + "".join(f"{a:8.3f} [{lo:.2f}, {hi:.2f}]" for a, lo, hi in cells)
              + f"   ({time.time() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
