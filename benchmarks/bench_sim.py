"""Frames per second of the synthetic rig at 640x480 on one core, per domain and species, plus the
face detector's hit rate on the same frames and `edge-fas doctor --json`.

Domains: the four named domains and the randomised family (rand, rand_heldout). For the randomised
family a second table gives the cost of a *new* sample (a new scene: its attack's atlas, and every
IDENTITY_BLOCK / CAMERA_BLOCK samples a new identity and camera), which is what rendering training
data pays per sample; the fps table is a live stream's cost (one scene re-rendered in motion).

    .venv/bin/python benchmarks/bench_sim.py [--frames 60] [--width 640 --height 480] [--new-samples 24]
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
from edge_fas.sim import ALL_DOMAINS, SPECIES, is_randomized, make_rig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames timed per domain x species")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--new-samples", type=int, default=24, help="new scenes timed per randomised domain")
    parser.add_argument("--domains", default=",".join(ALL_DOMAINS))
    parser.add_argument("--no-doctor", action="store_true")
    args = parser.parse_args()

    print(f"synthetic rig, {args.width}x{args.height}, one thread; {args.frames} frames per cell "
          "(first render of each sample excluded: it builds the presentation once)")
    print(f"{'domain':8s} " + " ".join(f"{s:>13s}" for s in SPECIES) + "   all")
    overall = []
    domains = args.domains.split(",")
    for domain in domains:
        rig = make_rig(domain, seed=0, width=args.width, height=args.height)
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

    randomised = [d for d in domains if is_randomized(d)]
    if randomised and args.new_samples > 0:
        print(f"\nnew samples (training data): {args.new_samples} consecutive sample indices per domain, "
              "species cycling; ms per sample including identity, camera and atlas builds")
        for domain in randomised:
            rig = make_rig(domain, seed=5, width=args.width, height=args.height)
            times = []
            for i in range(args.new_samples):
                start = time.perf_counter()
                rig.render(SPECIES[i % len(SPECIES)], 1000 + i, 0.0)
                times.append(time.perf_counter() - start)
            print(f"{domain:14s} mean {1000 * np.mean(times):.0f} ms, median {1000 * np.median(times):.0f} ms, "
                  f"max {1000 * np.max(times):.0f} ms per new sample")

    print()
    with FaceDetector() as detector:
        for family, names in (("named", [d for d in domains if not is_randomized(d)]), ("randomised", randomised)):
            if not names:
                continue
            hits = {"bona_fide": [], "attack": []}
            per_domain = []
            rigs = {d: make_rig(d, seed=11, width=args.width, height=args.height) for d in names}
            for i in range(200):
                domain = names[(i // 2) % len(names)]  # every domain gets bona fide and attacks
                species = "bona_fide" if i % 2 == 0 else SPECIES[1 + (i // 2) % 6]
                frames = rigs[domain].render(species, i, 0.1 * (i % 7))
                found = bool(detector.detect(frames.rgb))
                hits["bona_fide" if species == "bona_fide" else "attack"].append(found)
                per_domain.append(found)
            print(f"face detector on a 200-frame sample of the {family} domains ({', '.join(names)}): bona fide "
                  f"{np.mean(hits['bona_fide']):.1%}, attacks {np.mean(hits['attack']):.1%}")
            for d in names if family == "randomised" else ():
                mine = [h for k, h in enumerate(per_domain) if names[(k // 2) % len(names)] == d]
                print(f"  {d}: {np.mean(mine):.1%} of its {len(mine)} frames")

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
