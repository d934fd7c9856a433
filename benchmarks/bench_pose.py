"""The head-pose gate (edge_fas.pipeline.pose) on the synthetic rig: how well depth measures the head's yaw
and pitch, how many live faces inside the validated pose range it turns away, and how many heads turned
past it it catches.

    .venv/bin/python benchmarks/bench_pose.py [--seeds 16,17] [--per-species 10] \
        [--sets named,rand,rand_heldout,rand_test] [--turned 12]

Frames are rendered by edge_fas.sim, registered with edge_fas.calibration and framed by the vendored
BlazeFace detector (the detection that overlaps the rendered face), as in the live pipeline, at the
default limits (decision.max_yaw_deg, max_pitch_deg). The rig's heads turn up to 25 degrees (named
domains) or 30 (the randomised family) and tilt up to 15 or 18. `--turned N` adds N bona fide frames per
seed and side on two sets beyond that: the `rand` ranges with the yaw drawn in 35-50 degrees to either side, and
with the pitch drawn in 30-40 degrees up or down.

Per set it prints: the measurement's error against the rig's own pose (bona fide; the truth is the rendered
head's yaw and pitch, made relative to the line of sight as the gate measures it); how many live faces the
gate turns away among those inside the limits by that truth (its cost) and among those past them (its
catch); the share of frames it turns away per species, with 95% intervals; and, of the live faces the
physics check's nose test vetoes (`no_nose_in_depth`), how many the gate has already turned away with its
"face the camera" reason. The estimator was chosen on seeds 0-1; report on others. Synthetic data only:
the rig's heads are a height map over a photo, with no ears or back of the head, so nothing here says how
the measurement does on real heads. Timings are from a shared, loaded 2-core box.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def turned_sets():
    """(title, RangeSet) pairs: `rand` with heads turned, then tilted, past the validated pose range."""
    from edge_fas.sim import RANGE_SETS

    rand = RANGE_SETS["rand"]
    return [("turned 35-50 degrees", [rand.with_overrides("rand_turned_right", {"pose.yaw_deg": (35.0, 50.0)}),
                                      rand.with_overrides("rand_turned_left", {"pose.yaw_deg": (-50.0, -35.0)})]),
            ("tilted 30-40 degrees", [rand.with_overrides("rand_tilted_down", {"pose.pitch_deg": (30.0, 40.0)}),
                                      rand.with_overrides("rand_tilted_up", {"pose.pitch_deg": (-40.0, -30.0)})])]


def true_pose(frames, box, k) -> tuple[float, float]:
    """The rendered head's (yaw, pitch) in the gate's convention (+yaw: the face points to the image's
    right, +pitch: down), relative to the line of sight through the box centre."""
    extra = frames.truth.extra
    u, v = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    return (-extra["yaw_deg"] + math.degrees(math.atan2(u - k.cx, k.fx)),
            extra["pitch_deg"] + math.degrees(math.atan2(v - k.cy, k.fy)))


def measure(rig, species, index, t, detector, check, limits, rows, times) -> bool:
    """Render one frame and add its row; False when no face was found on it."""
    from edge_fas.calibration import register_to_color
    from edge_fas.face import detection_near
    from edge_fas.pipeline import decision as D
    from edge_fas.pipeline.pose import head_pose, pose_faults

    frames = rig.render(species, index=index, t=t)
    found = detection_near(detector.detect(frames.rgb), frames.truth.face_box)
    if found is None:
        return False
    reg = register_to_color(frames)
    t0 = time.perf_counter()
    pose = head_pose(reg, found.box, found.keypoints)
    times.append(time.perf_counter() - t0)
    findings = check.check(reg, found.box, found.keypoints).findings
    truth = true_pose(frames, found.box, reg.calibration.color)
    past = abs(truth[0]) > limits[0] or abs(truth[1]) > limits[1]
    rows.append(dict(species=species, pose=pose, truth=truth, past=past, gated=bool(pose_faults(pose, *limits)),
                     nose_veto=any(D.reason_code(f) == D.NO_NOSE_IN_DEPTH for f in findings)))
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="16,17")
    ap.add_argument("--per-species", type=int, default=10, help="frames per species, domain and seed")
    ap.add_argument("--sets", default="named,rand,rand_heldout,rand_test",
                    help="comma-separated: 'named' (the four named domains, pooled) and/or randomised range sets")
    ap.add_argument("--turned", type=int, default=12, help="bona fide frames per seed and side on the sets turned "
                                                          "and tilted past the validated range (0: none)")
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()

    from bench_physics import render_sets

    from edge_fas.config import DecisionConfig
    from edge_fas.face import FaceDetector
    from edge_fas.pipeline.physics import PhysicsCheck
    from edge_fas.sim import SPECIES, make_rig

    config = DecisionConfig()
    limits = (config.max_yaw_deg, config.max_pitch_deg)
    check = PhysicsCheck.from_config(config)
    detector = FaceDetector()
    w, h = (int(v) for v in args.size.split("x"))
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"synthetic rig, seeds {args.seeds}, {args.size}, {args.per_species} frames per species per domain and "
          f"seed; limits: yaw {limits[0]:g}, pitch {limits[1]:g} degrees")
    times: list[float] = []
    for title, domains in render_sets(args.sets):
        rows, missed = [], 0
        for seed in seeds:
            for domain in domains:
                rig = make_rig(domain, seed=seed, width=w, height=h)
                rng = np.random.default_rng([seed, len(domain), 16])
                for species in SPECIES:
                    for _ in range(args.per_species):
                        missed += not measure(rig, species, int(rng.integers(0, 10_000)), float(rng.uniform(0, 2)),
                                              detector, check, limits, rows, times)
        print(f"\n## {title}\n\n{missed} frames without a detected face skipped\n")
        print_tables(rows)
    for title, range_sets in (turned_sets() if args.turned else []):
        rows, missed = [], 0
        for seed in seeds:
            for ranges in range_sets:
                rig = make_rig(ranges.name, seed=seed, width=w, height=h, ranges=ranges)
                rng = np.random.default_rng([seed, len(ranges.name), 16])
                for _ in range(args.turned):
                    missed += not measure(rig, "bona_fide", int(rng.integers(0, 10_000)), float(rng.uniform(0, 2)),
                                          detector, check, limits, rows, times)
        print(f"\n## bona fide heads {title} (the `rand` ranges otherwise)\n\n{missed} frames without a detected "
              "face skipped\n")
        print_tables(rows)
    print(f"\nhead pose per frame: median {1000 * np.median(times):.2f} ms, 95th percentile "
          f"{1000 * np.percentile(times, 95):.2f} ms (shared 2-core machine)")
    return 0


def print_tables(rows: list[dict]) -> None:
    from edge_fas.metrics import binomial_interval

    def rate(k, n):
        lo, hi, _ = binomial_interval(k, n)
        return f"{k}/{n} ({100 * k / max(n, 1):.0f}%, CI {100 * lo:.0f}-{100 * hi:.0f}%)" if n else "0/0"

    live = [r for r in rows if r["species"] == "bona_fide" and r["pose"] is not None]
    if live:
        yaw_err = np.array([abs(r["pose"].yaw_deg - r["truth"][0]) for r in live])
        pitch_err = np.array([abs(r["pose"].pitch_deg - r["truth"][1]) for r in live])
        signed = np.array([abs(r["pose"].yaw_deg) - abs(r["truth"][0]) for r in live])
        print(f"live faces measured: {len(live)}; |yaw error| median {np.median(yaw_err):.1f}, 95th percentile "
              f"{np.percentile(yaw_err, 95):.1f}, max {yaw_err.max():.1f} degrees (turned heads read "
              f"{'low' if np.median(signed) < 0 else 'high'}: median |measured| - |true| {np.median(signed):+.1f}); "
              f"|pitch error| median {np.median(pitch_err):.1f}, 95th percentile {np.percentile(pitch_err, 95):.1f}\n")
    inside = [r for r in live if not r["past"]]
    past = [r for r in live if r["past"]]
    print(f"live faces inside the limits by the rig's own pose, turned away: "
          f"{rate(sum(r['gated'] for r in inside), len(inside))}; past a limit by the rig's pose, turned away: "
          f"{rate(sum(r['gated'] for r in past), len(past))}\n")
    print("| species | frames with a face | pose not measured | turned away (face_turned) |")
    print("|---|---|---|---|")
    for species in dict.fromkeys(r["species"] for r in rows):
        sub = [r for r in rows if r["species"] == species]
        print(f"| {species} | {len(sub)} | {sum(r['pose'] is None for r in sub)} | "
              f"{rate(sum(r['gated'] for r in sub), len(sub))} |")
    vetoed = [r for r in rows if r["species"] == "bona_fide" and r["nose_veto"]]
    yaws = ", ".join(f"{r['truth'][0]:.0f}" for r in vetoed) or "-"
    print(f"\nlive faces the nose test vetoes (no_nose_in_depth): {len(vetoed)}; of those turned away by the gate: "
          f"{sum(r['gated'] for r in vetoed)}; their true yaw (degrees): {yaws}")


if __name__ == "__main__":
    sys.exit(main())
