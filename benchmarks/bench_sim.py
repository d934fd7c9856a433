"""Frames per second of the synthetic rig at 640x480 on one core, per domain and species, plus the
face detector's hit rate on the same frames and `edge-fas doctor --json`.

    .venv/bin/python benchmarks/bench_sim.py [--frames 60] [--width 640 --height 480]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
cv2.setNumThreads(1)

from edge_fas.face import FaceDetector  # noqa: E402
from edge_fas.sim import DOMAINS, SPECIES, Rig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per domain x species")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--no-doctor", action="store_true")
    args = parser.parse_args()

    print(f"synthetic rig, {args.width}x{args.height}, one thread; {args.frames} frames per cell "
          "(first render of each sample excluded: it builds the presentation once)")
    print(f"{'domain':8s} " + " ".join(f"{s:>13s}" for s in SPECIES) + "   all")
    overall = []
    for domain in DOMAINS:
        rig = Rig(domain, seed=0, width=args.width, height=args.height)
        cells = []
        for species in SPECIES:
            rig.render(species, 0, 0.0)
            start = time.perf_counter()
            for k in range(args.frames):
                rig.render(species, 0, k / 30.0)
            fps = args.frames / (time.perf_counter() - start)
            cells.append(fps)
            overall.append(fps)
        print(f"{domain:8s} " + " ".join(f"{c:10.1f} fps" for c in cells) + f"   {np.mean(cells):.1f} fps")
    print(f"slowest cell {min(overall):.1f} fps, mean {np.mean(overall):.1f} fps (target: >= 30 fps on one core)")

    hits = {"bona_fide": [], "attack": []}
    rigs = {d: Rig(d, seed=11, width=args.width, height=args.height) for d in DOMAINS}
    with FaceDetector() as detector:
        for i in range(200):
            domain = DOMAINS[i % 4]
            species = "bona_fide" if i % 2 == 0 else SPECIES[1 + (i // 2) % 6]
            frames = rigs[domain].render(species, i, 0.1 * (i % 7))
            hits["bona_fide" if species == "bona_fide" else "attack"].append(bool(detector.detect(frames.rgb)))
    print(f"face detector on a 200-frame sample: bona fide {np.mean(hits['bona_fide']):.1%}, "
          f"attacks {np.mean(hits['attack']):.1%}")

    if not args.no_doctor:
        out = subprocess.run([sys.executable, "-m", "edge_fas.cli", "doctor", "--json"], capture_output=True, text=True)
        print("edge-fas doctor --json:")
        try:
            print(json.dumps(json.loads(out.stdout), indent=1))
        except json.JSONDecodeError:
            print(out.stdout, out.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
