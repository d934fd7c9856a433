"""Live pipeline benchmark: display fps, decisions/s, p50/p95 frame-to-verdict latency, attacks judged live.

Runs the real pipeline (synthetic camera paced at its fps in real time, registration, BlazeFace,
tracker, crop, the artifact through the chosen runtime, decision policy) over the scripted scenario
once, while a poller reads `pipeline.latest()` at 100 Hz as the GUI does and counts the distinct
frames it could show (display fps). Frame-to-verdict latency = capture age + processing, per verdict.

    .venv/bin/python benchmarks/bench_pipeline.py                       # bundled demo artifact, ONNX Runtime
    .venv/bin/python benchmarks/bench_pipeline.py --model PATH --scenario "demo,take=2,loop=no" --threads 1

Targets (issue 7): display at the camera's 30 fps, >= 10 decisions/s, p95 < 150 ms, and no attack
take ever judged live.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import defaultdict

import numpy as np

from edge_fas.config import load_config
from edge_fas.drivers.base import Camera
from edge_fas.drivers.synthetic import open_synthetic
from edge_fas.pipeline import Pipeline
from edge_fas.runtime import load_runtime


class PacedCamera(Camera):
    """Streams pre-rendered frame sets at `fps` in real time, like a camera with free frames."""

    def __init__(self, frames, fps, like):
        self._frames, self.fps = frames, float(fps)
        self.calibration, self.device = like.calibration, like.device
        self.status = "connecting"
        self._closed = False

    def open(self):
        self.status, self._closed = "connected", False
        return self

    def close(self):
        self._closed, self.status = True, "closed"

    def frames(self):
        start = time.monotonic()
        for n, f in enumerate(self._frames):
            if self._closed:
                return
            delay = start + n / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield f.replace(meta=dict(f.meta))
        self.status = "closed"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="demo", help="artifact folder (default: the bundled demo)")
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=0, help="inference threads (0: runtime default)")
    ap.add_argument("--scenario", default="demo,loop=no", help="synthetic scenario spec")
    ap.add_argument("--seconds", type=float, default=60.0, help="stop after this long at the latest")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--live-render", action="store_true",
                    help="render the rig while streaming (then the simulator, not the pipeline, may set the "
                         "frame rate); default: render the scenario first and stream it from memory at --fps")
    args = ap.parse_args()

    cfg = load_config(overrides={"camera.width": args.width, "camera.height": args.height, "camera.fps": args.fps,
                                 "model.threads": args.threads})
    runtime = load_runtime(args.model, kind=args.runtime, threads=args.threads)
    if args.live_render:
        camera = open_synthetic(args.scenario, cfg, realtime=True)
    else:
        t = time.monotonic()
        with open_synthetic(args.scenario, cfg, realtime=False,
                            max_frames=int(args.seconds * args.fps)) as sim:
            frames = list(sim.frames())
        print(f"rendered {len(frames)} frames in {time.monotonic() - t:.1f} s", flush=True)
        camera = PacedCamera(frames, args.fps, sim)
    pipeline = Pipeline(camera, runtime, cfg)

    results = []
    pipeline.on_result = results.append
    shown, stop = [], threading.Event()

    def poll():  # what the viewer does: 100 Hz, count frames it has not shown yet
        last = None
        while not stop.is_set():
            r = pipeline.latest()
            if r is not None and r.frames is not None and r.frames.counter != last:
                last = r.frames.counter
                shown.append(time.monotonic())
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    pipeline.start()
    poller.start()
    t0 = time.monotonic()
    while pipeline.running and time.monotonic() - t0 < args.seconds:
        time.sleep(0.05)
    pipeline.stop()
    stop.set()
    poller.join()

    judged = [r for r in results if r.frames is not None]
    lat = np.array([r.verdict.latency_ms["total"] for r in judged if "total" in r.verdict.latency_ms])
    span = (judged[-1].frames.meta["host_time"] - judged[0].frames.meta["host_time"]) if len(judged) > 1 else 0
    display_fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) > 1 else 0.0
    takes = defaultdict(lambda: {"species": None, "verdicts": defaultdict(int)})
    for r in judged:
        t = r.verdict.truth
        if t is None:
            continue
        k = r.frames.meta.get("take")
        takes[k]["species"] = t.species
        takes[k]["verdicts"][r.verdict.verdict] += 1
    attack_live = [k for k, v in takes.items() if v["species"] != "bona_fide" and v["verdicts"].get("live")]
    stages = defaultdict(list)
    for r in judged:
        for k, v in r.verdict.latency_ms.items():
            stages[k].append(v)
    report = {
        "model": runtime.model_name, "runtime": runtime.kind, "reason": runtime.reason,
        "camera": f"synthetic:{args.scenario} {args.width}x{args.height}@{args.fps}",
        "camera_frames": pipeline.frames_captured, "dropped": pipeline.mailbox.dropped,
        "display_fps": round(display_fps, 1),
        "decisions_per_s": round((len(judged) - 1) / span, 1) if span else 0.0,
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1)}
        if lat.size else None,
        "stage_p50_ms": {k: round(float(np.median(v)), 1) for k, v in stages.items()},
        "takes": {str(k): {"species": v["species"], **v["verdicts"]} for k, v in sorted(takes.items())},
        "attack_takes_judged_live": len(attack_live),
    }
    print(json.dumps(report, indent=1))
    ok = (display_fps >= 0.9 * args.fps and report["decisions_per_s"] >= 10 and report["latency_ms"]
          and report["latency_ms"]["p95"] < 150 and not attack_live)
    print("targets met" if ok else "targets NOT met (30 fps display, >= 10 decisions/s, p95 < 150 ms, no attack live)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
