"""Does the tracker see a new face where the last one stood? Changes of take found, faces split, and the verdicts.

    .venv/bin/python benchmarks/bench_new_face.py [--seeds 50,51] [--domains surf,...] [--rules before,now] \
        [--take 3] [--model demo]

The decision window belongs to one face (edge_fas.pipeline.tracker): a new face the tracker does not see begins with
the last one's live frames. bench_system.render's `mixed` scenario changes person or attack at every take with no
frame between, in the same place, so every change of take is a new face to find. Each camera's frames are rendered
once and judged (Pipeline.prepare + judge, every frame in order, the default config) under each set of rules:
`before`, the box-overlap rule alone (the look and distance rules switched off through the module's constants), and
`now`, the shipped tracker. Printed per rule: the changes of take seen on the new face's first frame (and by which
rule), the faces started within a take, and the frames and takes judged live per bona fide and attack.
Synthetic rig only; seeds 20-21 chose the rules' limits, seeds 50-51 measured them (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_system import render  # noqa: E402  (benchmarks are scripts)


@contextmanager
def rules(which: str):
    """The tracker's look and distance rules on (`now`) or off (`before`: a face changes by box overlap alone)."""
    from edge_fas.pipeline import tracker as T

    saved = T.MIN_LOOK_SIMILARITY, T.MAX_DEPTH_SPEED_M_S
    if which == "before":
        T.MIN_LOOK_SIMILARITY, T.MAX_DEPTH_SPEED_M_S = -2.0, float("inf")  # a correlation is never under -1
    try:
        yield
    finally:
        T.MIN_LOOK_SIMILARITY, T.MAX_DEPTH_SPEED_M_S = saved


def judge(frames, camera, runtime, detector) -> list[tuple]:
    """(take, species, has a face, changed, why, verdict) per frame."""
    from edge_fas.config import load_config
    from edge_fas.pipeline import Pipeline

    pipeline = Pipeline(camera, runtime, load_config(), detector=detector, no_drop=True)
    out = []
    for f in frames:
        p = pipeline.prepare(f.replace(meta=dict(f.meta)))
        verdict = pipeline.judge(p)
        out.append((f.meta["take"], f.truth.species, p.box is not None, p.changed,
                    pipeline.tracker.why if p.changed else "", verdict.verdict))
    return out


def summarise(rows: list[tuple]) -> dict:
    seen_takes, caught, missed, within, faces = set(), Counter(), 0, 0, 0
    takes: dict = {}
    previous = None
    for run, (take, species, face, changed, why, verdict) in rows:
        takes.setdefault((run, take, species), []).append(verdict)
        if not face:
            continue
        faces += 1
        if (run, take) not in seen_takes:  # the take's first frame with a face
            seen_takes.add((run, take))
            if previous == run:  # not the first take of a camera
                if changed:
                    caught["overlap" if why in ("moved", "first", "lost") else why] += 1
                else:
                    missed += 1
            previous = run
        elif changed:
            within += 1
    bona = [v for k, v in takes.items() if k[2] == "bona_fide"]
    attack = [v for k, v in takes.items() if k[2] != "bona_fide"]

    def live(groups):
        frames = sum(len(g) for g in groups)
        return (f"{sum(v == 'live' for g in groups for v in g)}/{frames} frames, "
                f"{sum(any(v == 'live' for v in g) for g in groups)}/{len(groups)} takes")
    return {"caught": dict(caught), "missed": missed, "within": within, "faces": faces,
            "bona fide live": live(bona), "attack live": live(attack)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domains", default="surf,wmca,cefa,padisi,rand_heldout,rand_test")
    ap.add_argument("--seeds", default="50,51", help="rig seeds, one drawn camera each")
    ap.add_argument("--rules", default="before,now")
    ap.add_argument("--take", type=float, default=3.0, help="seconds per attack take; bona fide 4/3 of it")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--runtime", default="onnxruntime")
    args = ap.parse_args(argv)

    from edge_fas.config import DetectorConfig
    from edge_fas.face import FaceDetector
    from edge_fas.runtime import load_runtime

    runtime = load_runtime(args.model, kind=args.runtime)
    d = DetectorConfig()
    detector = FaceDetector(min_score=d.min_score, zoom_search=d.zoom_search)
    which = args.rules.split(",")
    rows: dict[str, list] = {w: [] for w in which}
    for domain in args.domains.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.monotonic()
            frames, camera = render(domain, seed, 1, args.take)
            for w in which:
                with rules(w):
                    rows[w] += [(f"{domain}/{seed}", r) for r in judge(frames, camera, runtime, detector)]
            print(f"{domain}/{seed}: {len(frames)} frames, {time.monotonic() - t0:.0f} s", flush=True)
    print(f"\nsynthetic rig, `mixed` scenario, takes of {args.take:g} s, seeds {args.seeds}, model {args.model}")
    for w in which:
        s = summarise(rows[w])
        changes = sum(s["caught"].values()) + s["missed"]
        print(f"{w:7s} changes of take seen on the new face's first frame: {sum(s['caught'].values())}/{changes} "
              f"{s['caught']}; faces started within a take: {s['within']} of {s['faces']} frames with a face; "
              f"bona fide live: {s['bona fide live']}; attack live: {s['attack live']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
