"""The running registration check (calibration.monitor): does it find a wrong calibration, and does it leave a right
one alone?

    .venv/bin/python benchmarks/bench_registration_monitor.py [--domains surf,wmca,cefa,padisi,rand_heldout,rand_test] \
        [--seeds 30,31] [--take 1.5] [--model demo] [--mode detector] [--hard]

Per domain and rig seed it renders the synthetic camera's `mixed` scenario once (bona fide and each attack species
in turn, a new person each take, one drawn camera per seed; bench_system.render) and judges the same frames through
the pipeline (Pipeline.process on every frame in order, as `edge-fas run --no-drop`; bench_system.judge) with the
true calibration and with the wrong ones of bench_miscalibration.py: another unit of the same model, the baseline
10 mm or -25 mm off, the depth and IR imagers turned 1 or 2 degrees; with --hard also the baseline 60 mm off and the
imagers turned 5 degrees (outlines farther apart than the check's search). The monitor runs at its shipped settings.

It prints, per calibration:
- the frames refused for `registration_drift` (with the true calibration these are false alarms; 95% intervals,
  Clopper-Pearson, over frames, which are not independent: read them with the per-run counts);
- the runs (domain x seed) where it refused at all, and the camera time and the number of the take at its first
  refusal (`min_faces` faces must have been read first);
- the frames judged `live` per species, overall and after the first refusal (what a wrong calibration still lets
  through while the monitor has not yet seen enough faces), and where attack frames were live after a refusal
  (the check had released the camera again).

Synthetic rig only; the monitor's limit and face counts were chosen on seeds 0-2 of the same domains (per-frame
readings, not this pipeline), the share of outline a reading must explain after a first run on seeds 20-21; seeds
30-31 report it. Takes here last `--take` seconds (bona fide 4/3 of that): a kiosk's visitors stay
longer and come less often, so the time to the first refusal is counted in takes as well as seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_miscalibration import SPECIES_ORDER, calibrations  # noqa: E402  (benchmarks are scripts)
from bench_system import judge, render  # noqa: E402

DRIFT = "registration_drift"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", default="surf,wmca,cefa,padisi,rand_heldout,rand_test")
    ap.add_argument("--seeds", default="30,31", help="rig seeds, one drawn camera each (default 30,31)")
    ap.add_argument("--take", type=float, default=1.5, help="seconds per attack take; bona fide 4/3 of it")
    ap.add_argument("--model", default="demo", help="artifact folder (default: the bundled demo)")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--hard", action="store_true", help="also the knocks past the check's search (bench_miscalibration's "
                                                         "baseline+60mm, turned5deg)")
    ap.add_argument("--mode", default="detector", help="decision.physics (default detector: the bundled model's "
                                                       "mode on a real camera, where misregistration counts most)")
    args = ap.parse_args()

    from edge_fas.config import DetectorConfig, load_config
    from edge_fas.face import FaceDetector
    from edge_fas.metrics import binomial_interval
    from edge_fas.runtime import load_runtime

    runtime = load_runtime(args.model, kind=args.runtime)
    d = DetectorConfig()
    detector = FaceDetector(min_score=d.min_score, zoom_search=d.zoom_search)
    c = load_config().calibration
    print(f"model {runtime.model_name} ({args.model}); decision.physics {args.mode}; synthetic camera, mixed "
          f"scenario, takes of {args.take:g} s (bona fide {args.take * 4 / 3:g} s) at 30 fps; monitor: a reading every "
          f"{c.monitor_interval_s:g} s, refuses beyond {c.monitor_limit_px:g} px over the last {c.monitor_faces} faces "
          f"(at least {c.monitor_min_faces})")
    frames_by = defaultdict(list)  # calibration -> (run, frame index, take, species, verdict, reasons)
    first = defaultdict(dict)  # calibration -> run -> (seconds, take number) of the first refusal, or None
    runs = []
    for domain in args.domains.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            run = f"{domain}/{seed}"
            runs.append(run)
            t0 = time.monotonic()
            frames, camera = render(domain, seed, 1, args.take)
            print(f"{run}: {len(frames)} frames rendered in {time.monotonic() - t0:.0f} s", flush=True)
            for name, cal in calibrations(frames[0].calibration, seed, args.hard).items():
                wrong = [f.replace(calibration=cal) for f in frames]
                rows = judge(wrong, camera, runtime, args.mode, detector, {})
                hit = None
                for i, (take, species, verdict, reasons, _prompt) in enumerate(rows):
                    frames_by[name].append((run, i, take, species, verdict, reasons))
                    if hit is None and DRIFT in reasons:
                        hit = (wrong[i].timestamp_ms / 1000.0, take)
                first[name][run] = hit
                print(f"  {name}: first refusal {'none' if hit is None else f'at {hit[0]:.1f} s (take {hit[1]})'}",
                      flush=True)

    def rate(k, n):
        lo, hi, _ = binomial_interval(k, n)
        return f"{k}/{n} = {100 * k / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" if n else "-"

    print("\n## Refusals for registration_drift\n")
    print("| calibration | frames refused | runs refused at all | first refusal: seconds (take), median [range] |")
    print("|---|---|---|---|")
    for name, rows in frames_by.items():
        refused = sum(DRIFT in r[5] for r in rows)
        hits = [h for h in first[name].values() if h is not None]
        when = "-" if not hits else (f"{sorted(h[0] for h in hits)[len(hits) // 2]:.1f} s "
                                     f"(take {sorted(h[1] for h in hits)[len(hits) // 2]}) "
                                     f"[{min(h[0] for h in hits):.1f}, {max(h[0] for h in hits):.1f} s]")
        print(f"| {name} | {rate(refused, len(rows))} | {len(hits)}/{len(runs)} | {when} |")
    missed = {name: [r for r, h in first[name].items() if h is None] for name in frames_by if name != "true"}
    print("\nRuns never refused: " + "; ".join(f"{k}: {', '.join(v) or 'none'}" for k, v in missed.items()))
    false_alarms = [r for r, h in first["true"].items() if h is not None]
    print(f"True calibration refused in: {', '.join(false_alarms) or 'no run'}")

    print(f"\n## Frames judged live (decision.physics {args.mode}): all frames; after the first refusal\n")
    names = list(frames_by)
    print("| species | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for sp in SPECIES_ORDER:
        cells = []
        for name in names:
            rows = [r for r in frames_by[name] if r[3] == sp]
            live = sum(r[4] == "live" for r in rows)
            after = [r for r in rows if first[name].get(r[0]) is not None and r[2] > first[name][r[0]][1]]
            cells.append(f"{live}/{len(rows)}; {sum(r[4] == 'live' for r in after)}/{len(after)}")
        print(f"| {sp} | " + " | ".join(cells) + " |")
    # where attack frames were live after a refusal, the check had released the camera again: say where
    leaks = defaultdict(int)
    for name in names:
        for r in frames_by[name]:
            if r[3] != "bona_fide" and r[4] == "live" and first[name].get(r[0]) and r[2] > first[name][r[0]][1]:
                leaks[(name, r[0], r[2], r[3])] += 1
    print("\nAttack frames live after the first refusal (calibration, run, take, species: frames): "
          + ("; ".join(f"{n} {run} take {t} {sp}: {k}" for (n, run, t, sp), k in leaks.items()) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
