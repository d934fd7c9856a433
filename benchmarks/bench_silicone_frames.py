"""Would a few frames averaged show silicone where one frame does not? bench_silicone_cues.py's measurements on
one frame's crop and on the mean of K consecutive frames' crops of the same scenes.

    .venv/bin/python benchmarks/bench_silicone_frames.py --model runs/RUN/artifact \
        [--sets rand,rand_test] [--seeds 300,301] [--per-species 200] [--frames 8] [--workers 2]

A diagnosis of the synthetic rig, no network involved. bench_silicone_matched.py finds that each of the
silicone mask's drawn near-IR factors (level, texture kept, dot spread) changes the network's near-IR crop by
less than the near-IR imager's noise changes it between two frames, on every range set. Noise that is
independent from frame to frame falls as 1/sqrt(K) in a mean of K frames; the person, the mask and the camera do
not change in a third of a second. So this renders, for each bona fide and each silicone scene (rig.sample of the
set's range set at each --seed, indices 0..N-1: bona fide index i and silicone index i share a person), K frames
at 30 frames a second (the head sways as it does live), cuts each with its own face box and the artifact's
preprocessing, and measures bench_silicone_cues.py's seven cues on frame 0 alone and on the mean of the K crops
(depth and near-IR holes left out of the mean). It prints, for each, each cue's AUC and all seven combined by a
logistic regression fitted on one rig seed and scored on the other, with APCER where BPCER is 5% and 95%
bootstrap intervals. Seeds 300 and 301 are no benchmark's (edge_fas/data/evaluation_sets.py) and no training's.
It says what a multi-frame input could gain on the rig; it trains nothing and says nothing of a real camera.
"""

from __future__ import annotations

import argparse
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FPS = 30.0


def mean_crop(crops):
    """The mean of K FaceCrops; depth and near-IR averaged over the frames where a pixel holds a value."""
    from dataclasses import replace

    def held_mean(stack):
        held = (stack != 0).sum(0)
        return np.where(held > 0, stack.sum(0) / np.maximum(held, 1), 0.0).astype(np.float32)

    return replace(crops[0], rgb=np.mean([c.rgb for c in crops], 0).astype(np.float32),
                   depth=held_mean(np.stack([c.depth for c in crops])), ir=held_mean(np.stack([c.ir for c in crops])))


def _sample_cues(args):
    """(cues of frame 0, cues of the K-frame mean) for one scene, or None where a frame shows no face."""
    from bench_silicone_cues import CUES, cues

    from edge_fas.data.synthetic import _rig, register
    from edge_fas.preprocess import crop_face

    domain, seed, species, index, frames, width, height, params = args
    rig = _rig(domain, seed, width, height)
    crops = []
    for k in range(frames):
        f = rig.render(species, index, t=k / FPS)
        if f.truth is None or f.truth.face_box is None:
            return None
        crops.append(crop_face(register(f), f.truth.face_box, params))
    one, many = cues(crops[0], params), cues(mean_crop(crops), params)
    return [one[c] for c in CUES], [many[c] for c in CUES]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an artifact whose preprocessing cuts the crops (its manifest)")
    ap.add_argument("--sets", default="rand,rand_test", help="range sets of the randomised family")
    ap.add_argument("--seeds", default="300,301", help="two or more rig seeds: the combination is fitted on one, "
                                                      "scored on the other")
    ap.add_argument("--per-species", type=int, default=200, help="bona fide and silicone scenes per seed")
    ap.add_argument("--frames", type=int, default=8, help="K, frames averaged (30 a second)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", default="640x480", help="the rig's frame size (the recipe's data.rig_size)")
    args = ap.parse_args()

    from bench_silicone_cues import report
    from bench_silicone_matched import refuse_benchmark_seed

    from edge_fas.artifact import load_artifact
    from edge_fas.preprocess import PreprocessParams

    params = PreprocessParams.from_dict(load_artifact(args.model).manifest["preprocess"])
    width, height = (int(v) for v in args.size.split("x"))
    seeds = [int(s) for s in args.seeds.split(",")]
    for domain in [s.strip() for s in args.sets.split(",")]:
        for seed in seeds:
            refuse_benchmark_seed(domain, seed)
        single, averaged = {}, {}
        for seed in seeds:
            jobs = [(domain, seed, species, i, args.frames, width, height, params)
                    for species in ("bona_fide", "flexible_mask") for i in range(args.per_species)]
            with Pool(args.workers) as pool:
                rows = pool.map(_sample_cues, jobs, chunksize=4)
            kept = [(r, int(j[2] == "flexible_mask")) for r, j in zip(rows, jobs) if r is not None]
            y = np.array([k[1] for k in kept])
            single[seed] = (np.array([k[0][0] for k in kept]), y)
            averaged[seed] = (np.array([k[0][1] for k in kept]), y)
        report(f"{domain}, rig seeds {args.seeds}, one frame", single)
        report(f"{domain}, rig seeds {args.seeds}, mean of {args.frames} frames", averaged)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
