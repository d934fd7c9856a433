"""Face-crop sets rendered by the synthetic rig (edge_fas.sim): the domains CI and this machine train on.

Each (domain, split, i) is one deterministic sample: half bona fide, half attacks drawn with the
domain's own attack mix (or, with attack_mix="uniform", every attack species equally often: what a
model that must catch every species, like the demo model, trains on), at a random time in the
sample's motion. Splits use disjoint sample indices
(train from 0, val from 100000, test from 200000), so no frame is shared between them. The face box
is the vendored BlazeFace detector's, as in the live pipeline (the detection overlapping the rig's
truth box most; the truth box only where the detector finds none): a model trained on truth boxes
met differently framed crops live and its verdicts flipped with the framing. Crops go through
edge_fas.preprocess.crop_face like live frames.
Training streams SyntheticSamples (rendered lazily in DataLoader workers, through the crop cache);
synthetic_crops renders whole sets into memory, cached as .npz under `cache_dir`, keyed by every
parameter that changes them.

Domains are the rig's named domains (surf, cefa, wmca, padisi) or its randomised family (rand,
rand_heldout, and custom range sets passed as `ranges`; edge_fas.sim.ranges), whose own attack mix is
every species equally often. A randomised sample carries its range set, and its cache identity holds
every range value, so changing a range never reuses a crop rendered under the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.preprocess import PreprocessParams
from edge_fas.types import FrameSet

if TYPE_CHECKING:
    from edge_fas.sim.ranges import RangeSet

__all__ = ["SPLIT_OFFSETS", "ATTACK_MIXES", "SyntheticSample", "synthetic_samples", "synthetic_crops", "sample_plan",
           "range_set", "register"]

SPLIT_OFFSETS = {"train": 0, "val": 100_000, "test": 200_000}
CACHE_VERSION = 3  # 2: detector face boxes; 3: the detector's zoom search finds small faces


def register(frames: FrameSet) -> FrameSet:
    """Depth and IR in colour pixels. Uses edge_fas.calibration.register_to_color when the calibration
    part provides it, else the small forward warp below (pinhole, no distortion: the synthetic rig)."""
    try:
        from edge_fas.calibration import register_to_color
    except ImportError:
        return _forward_warp(frames)
    return register_to_color(frames)


def _forward_warp(frames: FrameSet) -> FrameSet:
    from dataclasses import replace

    cal = frames.calibration
    if cal is None or cal.color is None or cal.depth is None:
        raise ValueError("synthetic registration needs the frame set's calibration (colour and depth intrinsics)")
    d, c = cal.depth, cal.color
    z = frames.depth.astype(np.float32) * np.float32(frames.depth_scale)
    v, u = np.nonzero(z > 0)
    zz = z[v, u]
    pts = np.stack([(u - d.cx) / d.fx * zz, (v - d.cy) / d.fy * zz, zz], axis=1)
    p = cal.depth_to_color.apply(pts)
    uc = np.round(p[:, 0] / p[:, 2] * c.fx + c.cx).astype(np.int64)
    vc = np.round(p[:, 1] / p[:, 2] * c.fy + c.cy).astype(np.int64)
    ok = (p[:, 2] > 0) & (uc >= 0) & (uc < c.width) & (vc >= 0) & (vc < c.height)
    uc, vc, zc, src = uc[ok], vc[ok], p[ok, 2], (v[ok], u[ok])
    big = np.float32(1e9)
    zbuf = np.full((c.height, c.width), big, np.float32)
    np.minimum.at(zbuf, (vc, uc), zc.astype(np.float32))  # nearest surface wins
    ir = None
    if frames.ir is not None:
        ir = np.zeros((c.height, c.width), frames.ir.dtype)
        win = zc.astype(np.float32) == zbuf[vc, uc]
        ir[vc[win], uc[win]] = frames.ir[src[0][win], src[1][win]]
    # close the one-pixel gaps a denser colour grid leaves: fill from the nearest neighbour surface
    filled = cv2.erode(zbuf, np.ones((3, 3), np.uint8))
    hole = zbuf >= big
    zbuf = np.where(hole & (filled < big), filled, zbuf)
    if ir is not None:
        ir_f = cv2.dilate(ir, np.ones((3, 3), np.uint8))
        ir = np.where(hole, ir_f, ir)
    depth = np.where(zbuf < big, np.round(zbuf / frames.depth_scale), 0).astype(np.uint16)
    return replace(frames, depth=depth, ir=ir, registered=True)


ATTACK_MIXES = ("domain", "uniform")


def attack_probabilities(domain: str, attack_mix) -> dict[str, float]:
    """Attack species -> probability for `domain` under `attack_mix`.

    attack_mix: "domain" (the domain's own mix: a CASIA-SURF-like domain has no 3-D masks), "uniform"
    (every attack species the rig renders equally often) or a mapping {species: weight} relative to
    uniform, unlisted species weighing 1 ({flexible_mask: 4}: silicone four times as often as each
    other species, the hard-class emphasis of a weighted sampler)."""
    from edge_fas.sim import ATTACK_SPECIES, get_domain

    if isinstance(attack_mix, dict):
        unknown = sorted(set(attack_mix) - set(ATTACK_SPECIES))
        if unknown:
            raise ValueError(f"attack_mix names unknown species {unknown}; expected some of {', '.join(ATTACK_SPECIES)}")
        weights = {s: float(attack_mix.get(s, 1.0)) for s in ATTACK_SPECIES}
        if any(not np.isfinite(w) or w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"attack_mix weights must be finite, >= 0 and not all 0; got {attack_mix}")
        total = sum(weights.values())
        return {s: w / total for s, w in weights.items()}
    if attack_mix not in ATTACK_MIXES:
        raise ValueError(f"unknown attack_mix {attack_mix!r}: expected one of {', '.join(ATTACK_MIXES)} "
                         "or a mapping {species: weight}")
    from edge_fas.sim import is_randomized

    if attack_mix == "uniform" or is_randomized(domain):  # the randomised family's own mix is uniform
        return {s: 1.0 / len(ATTACK_SPECIES) for s in ATTACK_SPECIES}
    return get_domain(domain).attack_probabilities()


def sample_plan(domain: str, split: str, n: int, seed: int = 0, attack_share: float = 0.5,
                attack_mix="domain", start: int = 0):
    """[(index, species, t)] for `n` samples of `domain` in `split`; deterministic in its arguments.

    attack_mix: see attack_probabilities. start: the plan's rows from `start` on (rows start .. start + n - 1 of
    the plan that start=0 gives: a plan is a prefix of any longer one, so a later run can train on the people an
    earlier one's `n` stopped before)."""
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_OFFSETS)}")
    probs = attack_probabilities(domain, attack_mix)
    names, p = list(probs), np.array(list(probs.values()))
    rng = np.random.default_rng([seed, SPLIT_OFFSETS[split], *domain.encode()])
    plan = []
    for i in range(int(start) + n):
        species = "bona_fide" if rng.random() >= attack_share else str(rng.choice(names, p=p / p.sum()))
        t = round(float(rng.uniform(0.0, 2.0)), 3)  # drawn for every row, kept or not, so rows never shift
        if i >= start:
            plan.append((SPLIT_OFFSETS[split] + i, species, t))
    return plan


@dataclass(frozen=True)
class SyntheticSample:
    """One deterministic sample of the synthetic rig (a row of sample_plan), rendered lazily.

    ranges: the range set a randomised domain draws from (edge_fas.sim.ranges.RangeSet: rand,
    rand_heldout or a custom set named as the domain); None for a named domain."""

    domain: str
    seed: int
    width: int
    height: int
    index: int
    species: str
    t: float
    ranges: RangeSet | None = None
    missed_face: str = "truth"  # where the detector finds no face: cut at the rig's true box, or "skip" the sample

    @property
    def label(self) -> int:
        return 0 if self.species == "bona_fide" else 1

    @property
    def dataset(self) -> str:
        return self.domain

    @property
    def listed(self) -> str:
        return ""

    def identity(self) -> dict:
        from edge_fas.sim import fingerprint

        return {"kind": "synthetic", "sim": fingerprint(), "version": CACHE_VERSION, "domain": self.domain,
                "seed": self.seed, "size": [self.width, self.height], "index": self.index, "species": self.species,
                "t": self.t, **({"ranges": self.ranges.to_dict()} if self.ranges is not None else {}),
                **({"missed_face": self.missed_face} if self.missed_face != "truth" else {})}

    def needs_detector(self, detect: bool = False) -> bool:
        return True

    def rendered_frames(self):
        """The sample's frame set as the rig renders it (not registered)."""
        return _rig(self.domain, self.seed, self.width, self.height, self.ranges).render(self.species, self.index, self.t)

    def registered_frames(self):
        """The sample's frame set with depth and IR registered to colour, as the live pipeline sees it."""
        return register(self.rendered_frames())

    def source(self, params, detector=None):
        """Render, register and cut the face as the live pipeline frames it (None: no face in view)."""
        from edge_fas.data.source import face_source

        frames = self.rendered_frames()
        truth = frames.truth
        if truth is None or truth.face_box is None:
            return None
        box = detected_face_box(frames.rgb, truth.face_box, detector=detector)
        if box is None:
            # the product scores no frame whose face it does not detect; the true box frames a face more exactly
            # than any detector (docs/demo-model.md, "Where the probes' silicone came from"), so "skip" keeps
            # training and validation to the product's framing
            if self.missed_face == "skip":
                return None
            box = truth.face_box
        return face_source(register(frames), box, params)


MISSED_FACE = ("truth", "skip")


def synthetic_samples(domain: str, split: str, n: int, seed: int = 0, width: int = 320, height: int = 240,
                      attack_mix="domain", ranges: dict | None = None, missed_face: str = "truth",
                      start: int = 0) -> list[SyntheticSample]:
    """The samples of sample_plan as SyntheticSamples (what streaming training renders lazily).

    ranges: custom range sets of the randomised family {name: RangeSet} (edge_fas.sim.ranges.parse_custom),
    usable as domain names. missed_face: truth (a face the detector misses is cut at the rig's true box) | skip
    (such a sample has no face, as the product would see it). start: see sample_plan."""
    if missed_face not in MISSED_FACE:
        raise ValueError(f"missed_face {missed_face!r} is unknown; use one of {', '.join(MISSED_FACE)}")
    rs = range_set(domain, ranges)
    return [SyntheticSample(domain, int(seed), int(width), int(height), int(i), str(s), float(t), rs, missed_face)
            for i, s, t in sample_plan(domain, split, n, seed, attack_mix=attack_mix, start=start)]


def range_set(domain: str, ranges: dict | None = None) -> RangeSet | None:
    """The range set `domain` draws from (None for a named domain); an unknown domain is an error
    listing the known ones."""
    from edge_fas.sim import ALL_DOMAINS, get_ranges, is_domain, is_randomized

    ranges = dict(ranges or {})
    if not is_domain(domain, ranges):
        raise ValueError(f"unknown synthetic domain {domain!r}: expected some of {', '.join(ALL_DOMAINS + tuple(ranges))}")
    return get_ranges(domain, ranges) if is_randomized(domain) else None


def _render_one(args):
    sample, params = args
    from edge_fas.data.source import finish

    src = sample.source(params)
    if src is None:
        return None
    return finish(src, params), sample.label, sample.species, sample.domain


_DETECTOR = None  # one BlazeFace per (worker) process: (pid, detector)


def detected_face_box(rgb, truth_box, min_iou: float = 0.3, detector=None):
    """The detector's box for the face at `truth_box` (the live pipeline's framing), or None."""
    global _DETECTOR
    from edge_fas.face import FaceDetector, detection_near

    if detector is None:
        if _DETECTOR is None or _DETECTOR[0] != os.getpid():  # a forked worker starts its own
            _DETECTOR = (os.getpid(), FaceDetector())
        detector = _DETECTOR[1]
    found = detection_near(detector.detect(rgb), truth_box, min_iou)
    return found.box if found is not None else None


_RIGS: dict = {}


def _rig(domain, seed, width, height, ranges=None):
    from edge_fas.sim import make_rig

    key = (domain, seed, width, height, None if ranges is None else ranges.key())
    if key not in _RIGS:
        _RIGS[key] = make_rig(domain, seed=seed, width=width, height=height, ranges=ranges)
    return _RIGS[key]


def synthetic_crops(domains, split: str, per_domain: int, seed: int = 0, params: PreprocessParams | None = None,
                    width: int = 320, height: int = 240, cache_dir: str | Path | None = None,
                    workers: int = 1, progress=None, attack_mix="domain", ranges: dict | None = None,
                    missed_face: str = "truth", start: int = 0) -> CropSet:
    """Render `per_domain` samples of each domain in `split` and crop their faces.

    width/height: rig resolution (320x240 renders ~4x faster than VGA and still gives the face ~60-100
    px). workers > 1 renders in a process pool. progress: optional callable(done, total).
    attack_mix: see sample_plan. ranges: custom range sets of the randomised family {name: RangeSet}
    (edge_fas.sim.ranges.parse_custom), usable as domain names. missed_face: see synthetic_samples.
    start: the first row of each domain's plan (sample_plan)."""
    from edge_fas.sim import fingerprint

    params = params or PreprocessParams()
    domains = [domains] if isinstance(domains, str) else list(domains)
    for d in domains:
        range_set(d, ranges)

    key = json.dumps({"v": CACHE_VERSION, "sim": fingerprint(), "split": split, "n": per_domain, "seed": seed, "w": width, "h": height,
                      "p": params.to_dict(), **({"mix": attack_mix} if attack_mix != "domain" else {}),
                      **({"missed_face": missed_face} if missed_face != "truth" else {}),
                      **({"start": int(start)} if start else {})},
                     sort_keys=True)
    sets = []
    for d in domains:
        path = None
        rs = range_set(d, ranges)
        if cache_dir is not None:
            h = hashlib.sha256((key + d + (rs.key() if rs is not None else "")).encode()).hexdigest()[:12]
            rows = f"{per_domain}" if not start else f"{int(start)}+{per_domain}"
            path = Path(cache_dir) / f"synthetic-{d}-{split}-{rows}-{h}.npz"
            if path.exists():
                sets.append(CropSet.load(path))
                continue
        jobs = [(sample, params) for sample in synthetic_samples(d, split, per_domain, seed, width, height,
                                                                 attack_mix, ranges, missed_face, start)]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as ex:
                results = []
                for r in ex.map(_render_one, jobs, chunksize=8):
                    results.append(r)
                    if progress:
                        progress(len(results), len(jobs))
        else:
            results = []
            for k, j in enumerate(jobs):
                results.append(_render_one(j))
                if progress:
                    progress(k + 1, len(jobs))
        results = [r for r in results if r is not None]
        cs = CropSet.from_crops([r[0] for r in results], [r[1] for r in results], [r[2] for r in results],
                                [r[3] for r in results])
        if path is not None:
            cs.save(path)
        sets.append(cs)
    out = CropSet.concat(sets)
    out.meta = {"source": "synthetic", "domains": domains, "split": split, "per_domain": per_domain,
                **({"start": int(start)} if start else {}), "seed": seed,
                "rig_size": [width, height], "preprocess": params.to_dict(), "attack_mix": attack_mix}
    return out
