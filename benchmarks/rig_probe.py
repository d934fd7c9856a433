"""Shared by the rig-side checks (bench_hair_over.py, bench_skin_level.py): the same randomised-rig scenes with
one factor pinned, cut and normalised as the demo candidates see them, and the crop regions they read.

Pinning uses a degenerate range (v, v): it still draws from the sample's generator, so every other factor of
the scene stays as drawn and the conditions differ in that factor alone.
"""

from __future__ import annotations

import argparse

import numpy as np

SEED = 11  # rig seed of the scenes (rand_test's first reporting seed)
SCENE_STEP = 8  # every 8th sample index: a new identity every 2 scenes (IDENTITY_BLOCK 4)


def arguments(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--set", default="rand_test", help="range set of the randomised family")
    ap.add_argument("--scenes", type=int, default=48)
    return ap.parse_args()


def scene_indices(scenes: int) -> range:
    return range(0, SCENE_STEP * scenes, SCENE_STEP)


class Probe:
    """Rigs of one range set at SEED, each with some factors pinned, and their 128 px face_log IR crops."""

    def __init__(self, set_name: str):
        from edge_fas.preprocess import PreprocessParams
        from edge_fas.sim import get_ranges

        self.set_name = set_name
        self.ranges = get_ranges(set_name)
        self.params = PreprocessParams(size=128, depth_norm="plane_mm", ir_norm="face_log")

    def rig(self, pinned: dict | None = None):
        """A rig with the factors in `pinned` ({"identity.skin_ir": 0.45}) held at one value; none: as drawn."""
        from edge_fas.sim.randomized import RandomizedRig

        overrides = {k: (float(v), float(v)) for k, v in (pinned or {}).items()}
        ranges = self.ranges.with_overrides(self.set_name, overrides) if overrides else self.ranges
        return RandomizedRig(self.set_name, seed=SEED, ranges=ranges)

    def ir_crop(self, rig, species: str, index: int) -> np.ndarray | None:
        """The near-IR crop at the true face box (None: no face in view)."""
        from edge_fas.data.source import face_source, finish
        from edge_fas.data.synthetic import register

        fr = rig.render(species, index, 0.0)
        if fr.truth is None or fr.truth.face_box is None:
            return None
        return finish(face_source(register(fr), fr.truth.face_box, self.params), self.params).ir[0]

    def identity(self, index: int):
        """The drawn identity of scene `index` (its factors as the unpinned set draws them)."""
        from edge_fas.sim.randomized import draw_scene

        return draw_scene(self.ranges, SEED, "bona_fide", index).identity

    def header(self, scenes: int) -> str:
        return (f"{self.set_name}, rig seed {SEED}, {scenes} scenes at 640x480; {self.params.size} px face_log "
                "near-IR crops (units of 0.5 ln)\n")


def regions(n: int) -> dict[str, np.ndarray]:
    """Boolean masks of an n x n crop: the face ellipse as the 1.4x crop frames it, its upper half, the inner
    face, and the central square face_log normalises by."""
    yy, xx = np.mgrid[0:n, 0:n]
    face = ((xx - n / 2) / (n / 2.8)) ** 2 + ((yy - n / 2) / (n / 2.8)) ** 2 <= 1
    centre = np.zeros((n, n), bool)
    centre[n // 4:3 * n // 4, n // 4:3 * n // 4] = True
    return {"face": face, "upper": face & (yy < n / 2), "centre": centre,
            "inner": ((xx - n / 2) / (n / 4)) ** 2 + ((yy - n / 2) / (n / 4)) ** 2 <= 1}


def row_bands(change: np.ndarray, band: int = 16) -> str:
    return " ".join(f"{change[y:y + band].mean():.2f}" for y in range(0, change.shape[0], band))


def rho(a, b) -> float:
    """Spearman's rank correlation (no ties expected: continuous draws)."""
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def auc_lower(positives, negatives) -> float:
    """P(a positive's value < a negative's): how well 'lower' alone picks the positives."""
    return float((np.asarray(positives)[:, None] < np.asarray(negatives)[None, :]).mean())
