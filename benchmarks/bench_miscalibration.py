"""What a wrong rig calibration does to the product's decisions: does it fail closed?

    .venv/bin/python benchmarks/bench_miscalibration.py [--model demo] [--domain rand_test] [--seeds 11,12] \
        [--laps 2] [--modes detector,veto]

A site that copies its config to a second kiosk carries the first camera's `calibration.file` along; a camera
knocked on its mount keeps a calibration that no longer holds. Depth and IR are then registered to the wrong
colour pixels: the crop, the working-distance and pose checks and the physics check all read depth that is
not the face's. This renders the synthetic camera's `mixed` scenario (bench_system.render: bona fide and each
attack species in turn) once per seed and judges the same frames (Pipeline.process, every frame in order, as
`run --no-drop`; bench_system.judge) with the true calibration and with wrong ones put on every frame set:

- `unit`: another unit of the same model, drawn once per seed from assumed manufacturing tolerances (principal
  points +-6 px, focal lengths +-1%, depth-to-colour translation +-1.5 mm per axis, rotation +-0.3 degrees):
  a config copied to a second kiosk. The tolerances are an assumption, not a vendor's figure;
- `baseline+10mm`, `baseline-25mm`: the depth-to-colour (and IR-to-colour) translation off along x;
- `turned1deg`, `turned2deg`: the depth and IR imagers turned about the vertical axis (a knocked mount).

Per calibration and mode it prints, per species, the takes that reached `live` and the frames judged live
(Clopper-Pearson 95%), and the registration misalignment `calibration.check.registration_check` reads in the
surroundings of the face's true box on every tenth frame, one frame at a time (what a running registration check
could measure on a kiosk's own frames), where the view was measurable. The pipeline's running registration check
(calibration.monitor) is off unless --monitor: this measures what a wrong calibration does where nothing refuses it
(its tables in docs/deployment.md predate the check). Synthetic rig only: how much a real camera's registration error
moves its verdicts depends on its depth noise and its faces, and was not measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_system import judge, render  # noqa: E402  (benchmarks are scripts, not a package)

SPECIES_ORDER = ("bona_fide", "print", "replay", "paper_mask", "rigid_mask", "flexible_mask", "partial")


def _turned(degrees: float) -> np.ndarray:
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def _moved(cal, shift_m=(0.0, 0.0, 0.0), rotation=np.eye(3)):
    """`cal` with depth and IR both moved by `shift_m` and turned by `rotation` relative to colour."""
    from edge_fas.calibration.rig import Extrinsics

    def move(e):
        return Extrinsics(R=rotation @ np.asarray(e.R), t=np.asarray(e.t, float) + np.asarray(shift_m))
    return replace(cal, depth_to_color=move(cal.depth_to_color), ir_to_color=move(cal.ir_to_color))


def _another_unit(cal, rng):
    """The same model's calibration as another unit might have it (see the module docstring's tolerances)."""
    def intrinsics(i):
        if i is None:
            return None
        f = 1.0 + rng.uniform(-0.01, 0.01)
        return replace(i, fx=i.fx * f, fy=i.fy * f, cx=i.cx + rng.uniform(-6, 6), cy=i.cy + rng.uniform(-6, 6))
    axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(-0.3, 0.3))
    rotation = cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)[0]
    moved = _moved(cal, rng.uniform(-0.0015, 0.0015, 3), rotation)
    return replace(moved, color=intrinsics(cal.color), depth=intrinsics(cal.depth), ir=intrinsics(cal.ir))


def calibrations(true, seed: int, hard: bool = False) -> dict:
    """The true calibration and the wrong ones above; with `hard` also the knocks that put the outlines farther apart
    than the registration check reads (its WIDE_SHIFT_PX, 48 px): the baseline 60 mm off, the imagers turned 5 degrees
    (another model's calibration, a mount that gave way)."""
    rng = np.random.default_rng(1000 + seed)
    out = {"true": true, "unit": _another_unit(true, rng),
           "baseline+10mm": _moved(true, (0.010, 0.0, 0.0)), "baseline-25mm": _moved(true, (-0.025, 0.0, 0.0)),
           "turned1deg": _moved(true, rotation=_turned(1.0)), "turned2deg": _moved(true, rotation=_turned(2.0))}
    if hard:
        out.update({"baseline+60mm": _moved(true, (0.060, 0.0, 0.0)), "turned5deg": _moved(true, rotation=_turned(5.0))})
    return out


def misalignment(frames: list) -> list[float]:
    """registration_check in 1.6x the face's true box, every tenth frame that shows one: the reading where the
    view was measurable, NaN where it was not."""
    from edge_fas.calibration.check import registration_check
    from edge_fas.errors import CalibrationError

    out = []
    for f in frames[::10]:
        if f.truth is None or f.truth.face_box is None:
            continue
        x0, y0, x1, y1 = f.truth.face_box
        w, h = x1 - x0, y1 - y0
        try:
            r = registration_check(f, box=(x0 - 0.3 * w, y0 - 0.3 * h, x1 + 0.3 * w, y1 + 0.3 * h))
            out.append(r.misalignment_px if r.measurable else float("nan"))
        except CalibrationError:
            out.append(float("nan"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="artifact folder (default: the bundled demo)")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--domain", default="rand_test", help="named domain or randomised range set (default rand_test)")
    ap.add_argument("--seeds", default="11,12", help="rig seeds, one drawn camera each (default 11,12)")
    ap.add_argument("--laps", type=int, default=2, help="passes through every species per seed (default 2)")
    ap.add_argument("--modes", default="detector,veto", help="decision.physics modes (default detector,veto)")
    ap.add_argument("--monitor", action="store_true",
                    help="keep the running registration check on (default off: what a wrong calibration does where "
                         "nothing refuses it; benchmarks/bench_registration_monitor.py measures the check)")
    args = ap.parse_args()
    overrides = {} if args.monitor else {"calibration.monitor": False}

    from edge_fas.config import DetectorConfig
    from edge_fas.face import FaceDetector
    from edge_fas.metrics import binomial_interval
    from edge_fas.runtime import load_runtime

    runtime = load_runtime(args.model, kind=args.runtime)
    d = DetectorConfig()
    detector = FaceDetector(min_score=d.min_score, zoom_search=d.zoom_search)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"model {runtime.model_name} ({args.model}), threshold {runtime.threshold:.4g}; synthetic camera, "
          f"{args.domain}, seeds {args.seeds}, {args.laps} laps of the mixed scenario, 1 s takes at 30 fps")
    rows = defaultdict(list)  # (calibration, mode) -> (take, species, verdict, reasons, prompt)
    checks = defaultdict(list)  # calibration -> misalignment px
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.monotonic()
        frames, camera = render(args.domain, seed, args.laps, 1.0)
        print(f"seed {seed}: rendered {len(frames)} frames in {time.monotonic() - t0:.0f} s", flush=True)
        for name, cal in calibrations(frames[0].calibration, seed).items():
            wrong = [f.replace(calibration=cal) for f in frames]
            checks[name] += misalignment(wrong)
            for mode in modes:  # bench_system's judging: Pipeline.process on every frame in order
                rows[(name, mode)] += [(f"{seed}/{take}", *rest)
                                       for take, *rest in judge(wrong, camera, runtime, mode, detector, overrides)]
            print(f"  {name}: judged in {time.monotonic() - t0:.0f} s", flush=True)
            t0 = time.monotonic()

    def rate(k, n):
        lo, hi, _ = binomial_interval(k, n)
        return f"{k}/{n} [{100 * lo:.0f}, {100 * hi:.0f}]%" if n else "-"

    names = list(checks)
    for mode in modes:
        print(f"\n## decision.physics: {mode} (takes with a live verdict; frames judged live)\n")
        print("| species | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for sp in SPECIES_ORDER:
            cells = []
            for name in names:
                takes = defaultdict(list)
                for take, species, verdict, *_ in rows[(name, mode)]:
                    if species == sp:
                        takes[take].append(verdict == "live")
                if not takes:
                    break
                live_takes = sum(any(v) for v in takes.values())
                live = sum(sum(v) for v in takes.values())
                total = sum(len(v) for v in takes.values())
                cells.append(f"{live_takes}/{len(takes)} takes; {rate(live, total)}")
            if cells:
                print(f"| {sp} | " + " | ".join(cells) + " |")
    print("\n## registration_check around the true face box (every tenth frame showing one): median [10th, 90th percentile]\n")
    for name in names:
        m = np.asarray(checks[name])
        ok = m[np.isfinite(m)]
        print(f"- {name}: {np.median(ok):.1f} [{np.percentile(ok, 10):.1f}, {np.percentile(ok, 90):.1f}] px on the "
              f"{ok.size} measurable of {m.size} frames" if ok.size else f"- {name}: none of {m.size} frames measurable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
