"""Face selection and a light box tracker so the crop does not jitter between frames.

`select` picks the face to judge (largest, closest by depth, or nearest the image centre).
`FaceTracker.update` smooths the chosen box with an exponential moving average, and starts over
(`changed` True, so the decision window restarts) when the face jumps: overlap with the tracked box
below `min_iou`, or no face for `max_missing` frames.
"""

from __future__ import annotations

import numpy as np

from edge_fas.face import box_area as _area
from edge_fas.face import iou

__all__ = ["iou", "select", "face_distance_m", "FaceTracker"]


def face_distance_m(depth_m: np.ndarray | None, box) -> float | None:
    """Median valid depth (metres) in the central half of the box; None when there is none."""
    if depth_m is None:
        return None
    h, w = depth_m.shape[:2]
    x0, y0, x1, y1 = box
    cx0, cx1 = int(x0 + (x1 - x0) / 4), int(x1 - (x1 - x0) / 4)
    cy0, cy1 = int(y0 + (y1 - y0) / 4), int(y1 - (y1 - y0) / 4)
    patch = depth_m[max(cy0, 0):min(max(cy1, cy0 + 1), h), max(cx0, 0):min(max(cx1, cx0 + 1), w)]
    valid = patch[patch > 0]
    return float(np.median(valid)) if valid.size else None


def _center(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def select(detections, how: str = "largest", image_shape=None, depth_m=None):
    """The detection to judge, or None. `detections` have .box (x0, y0, x1, y1)."""
    if not detections:
        return None
    if how == "largest":
        return max(detections, key=lambda d: _area(d.box))
    if how == "center":
        if image_shape is None:
            raise ValueError("select(how='center') needs image_shape")
        cy, cx = image_shape[0] / 2, image_shape[1] / 2
        return min(detections, key=lambda d: (_center(d.box)[0] - cx) ** 2 + (_center(d.box)[1] - cy) ** 2)
    if how == "closest":
        def dist(d):
            z = face_distance_m(depth_m, d.box)
            return z if z is not None else float("inf")
        best = min(detections, key=dist)
        return best if dist(best) != float("inf") else max(detections, key=lambda d: _area(d.box))
    raise ValueError(f"face selection {how!r}: expected largest, closest or center (detector.select)")


class FaceTracker:
    def __init__(self, smoothing: float = 0.6, min_iou: float = 0.3, max_missing: int = 3):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"tracker smoothing {smoothing}: expected 0 <= smoothing < 1 (detector.smoothing)")
        self.smoothing = float(smoothing)
        self.min_iou = float(min_iou)
        self.max_missing = int(max_missing)
        self.box: np.ndarray | None = None
        self.missing = 0

    def update(self, box) -> tuple[tuple[int, int, int, int] | None, bool]:
        """Feed this frame's chosen box (or None). Returns (smoothed box or None, changed)."""
        if box is None:
            self.missing += 1
            if self.missing > self.max_missing and self.box is not None:
                self.box = None
                return None, True
            return None, False
        self.missing = 0
        new = np.asarray(box, dtype=np.float64)
        if self.box is None or iou(self.box, new) < self.min_iou:
            self.box = new  # a new face (or the first): the caller restarts its decision window
            return tuple(int(round(v)) for v in new), True
        self.box = self.smoothing * self.box + (1.0 - self.smoothing) * new
        return tuple(int(round(v)) for v in self.box), False
