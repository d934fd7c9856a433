"""How well `edge-fas calibrate --check` tells a right rig calibration from a wrong one.

    .venv/bin/python benchmarks/bench_registration_check.py [--domains surf,wmca,cefa,padisi,rand_heldout,rand_test] \
        [--seeds 8,9] [--takes 3] [--limit 2.0] [--size 1280x720 [--native]]

For each domain (named, or a randomised range set: one drawn camera per seed) and seed it renders `--takes`
bona fide takes (a person before the scene's background, as a site would stand in front of the kiosk), each
as `--frames` consecutive frames combined by their median depth (`steady_frames`, as `calibrate --check`), and
runs `calibration.check.registration_check` on each with the rig's true calibration and with wrong ones: the
depth and IR imagers moved along the baseline by 3, 5 and 10 mm, or turned by 0.5 and 1 degree. It prints,
per domain and calibration, how many frames were measurable (an outline seen in both depth and colour), the
median reading, and the share of measurable frames read within `--limit` px (`calibration.max_reprojection_px`:
for the true calibration that share passes; for a wrong one, the rest is caught), with 95% intervals
(Clopper-Pearson). Synthetic rig only; rig seeds 0-3 of surf, wmca, cefa, padisi and rand were used to design
the check (its thresholds: MIN_BORDER_PX, DEPTH_STEP_REL, MIN_MATCHED_PX), so report on other seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_miscalibration import _moved, _turned  # noqa: E402  (benchmarks are scripts, not a package)

WRONG = {"baseline+3mm": ((0.003, 0.0, 0.0), 0.0), "baseline+5mm": ((0.005, 0.0, 0.0), 0.0),
         "baseline+10mm": ((0.010, 0.0, 0.0), 0.0), "turned0.5deg": ((0.0, 0.0, 0.0), 0.5),
         "turned1deg": ((0.0, 0.0, 0.0), 1.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", default="surf,wmca,cefa,padisi,rand_heldout,rand_test")
    ap.add_argument("--seeds", default="8,9", help="rig seeds (default 8,9; 0-3 designed the check)")
    ap.add_argument("--takes", type=int, default=3, help="bona fide takes per seed (default 3)")
    ap.add_argument("--frames", type=int, default=5, help="consecutive frames per take, combined by their median "
                    "depth as `calibrate --check` does (default 5; 1: a single frame)")
    ap.add_argument("--limit", type=float, default=2.0, help="pass limit in px (calibration.max_reprojection_px)")
    ap.add_argument("--size", help="the camera's width x height, e.g. 1280x720 (default 640x480); a stream wider "
                    "than 640 is read on a 640-wide view and the limit scaled with its width (as calibrate --check)")
    ap.add_argument("--native", action="store_true", help="read a wider stream at its own pixels, against the limit "
                    "unscaled (how calibrate --check read it before 2026-12-04), for comparison")
    args = ap.parse_args()

    from edge_fas.calibration.check import limit_px, measure_registration, registration_check, steady_frames
    from edge_fas.calibration.registration import register_to_color
    from edge_fas.errors import CalibrationError
    from edge_fas.metrics import binomial_interval
    from edge_fas.sim import make_rig

    def share(k, n):
        lo, hi, _ = binomial_interval(k, n)
        return f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f}]%" if n else "-"

    width, height = (int(v) for v in args.size.split("x")) if args.size else (640, 480)
    limit = args.limit if args.native else limit_px(args.limit, width)
    print(f"registration_check on bona fide frames of the synthetic rig at {width}x{height}"
          f"{' read natively' if args.native and width > 640 else ''}, seeds {args.seeds}, {args.takes} per seed; "
          f"limit {args.limit:g} px ({limit:g} px of this stream)")
    print("\n| domain | calibration | measurable | median px | read within the limit | read above it |")
    print("|---|---|---|---|---|---|")
    for domain in args.domains.split(","):
        readings = {name: [] for name in ("true", *WRONG)}
        unmeasured = dict.fromkeys(readings, 0)
        for seed in (int(s) for s in args.seeds.split(",")):
            rig = make_rig(domain, seed=seed, fixed_camera=True, width=width, height=height)
            for take in range(args.takes):
                frames = steady_frames([rig.render("bona_fide", take, 0.5 + i / 30) for i in range(args.frames)])
                true = frames.calibration
                calibrations = {"true": true, **{name: _moved(true, shift, _turned(degrees))
                                                 for name, (shift, degrees) in WRONG.items()}}
                for name, cal in calibrations.items():
                    try:
                        result = (measure_registration(register_to_color(frames, cal), overlay=False) if args.native
                                  else registration_check(frames, cal))
                    except CalibrationError:
                        unmeasured[name] += 1
                        continue
                    if getattr(result, "measurable", True):
                        readings[name].append(result.misalignment_px)
                    else:
                        unmeasured[name] += 1
        for name, values in readings.items():
            v = np.asarray(values)
            n = v.size + unmeasured[name]
            within = int((v <= limit).sum())
            print(f"| {domain} | {name} | {v.size}/{n} | {np.median(v) if v.size else float('nan'):.1f} | "
                  f"{share(within, v.size)} | {share(v.size - within, v.size)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
