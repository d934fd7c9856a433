"""What the product decides, not what the network scores: the live pipeline's verdicts per species on the
synthetic camera, with the network alone, with the physics check as its veto, and with the physics check
deciding alone (what the bundled demo model gets on a real camera).

    .venv/bin/python benchmarks/bench_system.py [--model demo] [--domain rand_test] [--seeds 11,12] \
        [--laps 4] [--take 1.0] [--modes off,veto,detector]

bench_demo.py scores the artifact's crops through `edge-fas eval`: one score per frame, judged at a
threshold. A kiosk decides differently: the face is found and tracked, the working-distance and head-pose
checks and the physics check run, and `live` needs `decision.min_live_frames` live frames in the window
(edge_fas.pipeline). This runs that pipeline (Pipeline.process, every frame in order, as `edge-fas run
--no-drop`) over the synthetic camera's `mixed` scenario: bona fide and each attack species in turn, a new
identity, light, background and attack material each take, on one drawn camera per seed. The frames are
rendered once per seed and judged in each mode (decision.physics: off, veto, detector) at the default
config (`--set KEY=VALUE,...` changes it), the artifact's own threshold.

Per mode and species it prints the takes that reached a `live` verdict at least once (the attacker got
through; for bona fide, the person did), the frames judged `live`, with 95% intervals (Clopper-Pearson),
the commonest reasons on the rest, and what a kiosk showed the person then (edge_fas.pipeline.guidance).
Synthetic data only; `rand_test`'s cameras, lenses, materials and identities are outside everything the
randomised models were trained, selected or thresholded on.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("off", "veto", "detector")


def render(domain: str, seed: int, laps: int, take_s: float, fps: int = 30,
           size: tuple[int, int] | None = None) -> list:
    """Every frame of `laps` passes of the mixed scenario on one drawn camera of `domain` (at `size`, width and
    height, where given; else the config's 640x480)."""
    from edge_fas.config import load_config
    from edge_fas.drivers.synthetic import open_synthetic
    from edge_fas.sim.scenario import parse_scenario

    spec = f"mixed,domain={domain},seed={seed},take={take_s:g}"
    # whole laps: mixed plays bona fide (4/3 of a take) before each attack species
    frames_total = int(round(laps * parse_scenario(spec).duration_s * fps))
    config = load_config(overrides={"camera.fps": fps, **({"camera.width": size[0], "camera.height": size[1]}
                                                          if size else {})})
    with open_synthetic(spec, config, realtime=False, max_frames=frames_total) as camera:
        return list(camera.frames()), camera


def judge(frames: list, camera, runtime, mode: str, detector, overrides: dict) -> list[tuple]:
    """(take, species, verdict, reason codes, the kiosk's prompt) per frame, the pipeline in `mode` judging every
    frame in order."""
    from edge_fas.config import load_config
    from edge_fas.pipeline import Pipeline
    from edge_fas.pipeline.decision import reason_code
    from edge_fas.pipeline.guidance import prompt

    config = load_config(overrides={**overrides, "decision.physics": mode})
    pipeline = Pipeline(camera, runtime, config, detector=detector, no_drop=True)
    out = []
    for f in frames:
        _, verdict = pipeline.process(f.replace(meta=dict(f.meta)))
        out.append((f.meta["take"], f.truth.species, verdict.verdict,
                    tuple(dict.fromkeys(reason_code(r) for r in verdict.reasons)),
                    prompt(verdict.verdict, verdict.reasons, verdict.pose)))
    return out


def table(rows: list[tuple]) -> list[str]:
    """Markdown: per species, takes with a live verdict, frames live, and the commonest reasons on the rest."""
    from edge_fas.metrics import binomial_interval

    def rate(k, n):
        lo, hi, _ = binomial_interval(k, n)
        return f"{k}/{n} = {100 * k / max(n, 1):.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]" if n else "-"

    by_take = defaultdict(list)
    for take, species, verdict, reasons, words in rows:
        by_take[(species, take)].append((verdict, reasons, words))
    species_order = sorted({s for s, _ in by_take}, key=lambda s: (s != "bona_fide", s))
    lines = ["| species | takes with a live verdict | frames judged live | commonest reasons when not live | "
             "what the kiosk said then |", "|---|---|---|---|---|"]
    for sp in species_order:
        takes = [v for (s, _), v in by_take.items() if s == sp]
        frames = [x for t in takes for x in t]
        live = sum(v == "live" for v, _, _ in frames)
        reasons = Counter(r for v, rs, _ in frames if v != "live" for r in rs).most_common(3)
        said = Counter(w for v, _, w in frames if v != "live").most_common(3)
        lines.append(f"| {sp} | {rate(sum(any(v == 'live' for v, _, _ in t) for t in takes), len(takes))} | "
                     f"{rate(live, len(frames))} | {', '.join(f'{r} {n}' for r, n in reasons) or '-'} | "
                     f"{', '.join(f'{w} {n}' for w, n in said) or '-'} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="artifact folder (default: the bundled demo)")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--domain", default="rand_test", help="named domain or randomised range set (default rand_test)")
    ap.add_argument("--seeds", default="11,12", help="rig seeds, one drawn camera each (default 11,12)")
    ap.add_argument("--laps", type=int, default=4, help="passes through every species per seed (default 4)")
    ap.add_argument("--take", type=float, default=1.0, help="seconds per take at 30 fps (default 1.0)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"decision.physics modes to judge in ({', '.join(MODES)})")
    ap.add_argument("--set", default="", metavar="KEY=VALUE,...",
                    help="config overrides for every mode, e.g. decision.max_yaw_deg=90,decision.max_pitch_deg=90")
    args = ap.parse_args()
    overrides = dict(item.strip().split("=", 1) for item in args.set.split(",") if item.strip())
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"bench_system: --modes {unknown}: expected some of {', '.join(MODES)}")

    from edge_fas.config import DetectorConfig
    from edge_fas.face import FaceDetector
    from edge_fas.runtime import load_runtime

    runtime = load_runtime(args.model, kind=args.runtime)
    d = DetectorConfig()
    detector = FaceDetector(min_score=d.min_score, zoom_search=d.zoom_search)  # what the pipeline opens itself
    print(f"model {runtime.model_name} ({args.model}), runtime {runtime.kind}, threshold {runtime.threshold:.4g}; "
          f"synthetic camera, {args.domain}, seeds {args.seeds}, {args.laps} laps of the mixed scenario, "
          f"{args.take:g} s takes at 30 fps; config: {overrides or 'default'}")
    results = defaultdict(list)
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.monotonic()
        frames, camera = render(args.domain, seed, args.laps, args.take)
        print(f"seed {seed}: rendered {len(frames)} frames in {time.monotonic() - t0:.0f} s", flush=True)
        for mode in modes:
            t0 = time.monotonic()
            judged = judge(frames, camera, runtime, mode, detector, overrides)
            results[mode] += [(f"{seed}/{take}", *rest) for take, *rest in judged]
            print(f"  judged in mode {mode} in {time.monotonic() - t0:.0f} s", flush=True)
        del frames
    meaning = {"off": "the network alone (decision.physics: off)",
               "veto": "the network with the physics check's veto (decision.physics: veto, the synthetic rig's auto)",
               "detector": "the physics check alone (decision.physics: detector, a real camera's auto with a "
                           "synthetic-only model)"}
    for mode in modes:
        print(f"\n## {meaning[mode]}\n")
        print("\n".join(table(results[mode])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
