"""Face selection and a light box tracker so the crop does not jitter between frames.

`select` picks the face to judge (largest, closest by depth, or nearest the image centre).
`FaceTracker.update` smooths the chosen box with an exponential moving average, and starts over
(`changed` True, so the decision window restarts) when the face jumps: overlap with the tracked box
below `min_iou`, or no face for `max_missing` frames.

Overlap alone misses a new face in the same place: one person steps out as the next steps in, or an attacker
raises a photo or puts on a mask in front of their own face, with a face found on every frame. The decision
window then began the new face with the last one's live frames (four live frames of five make `live`, so one
attack frame scored live could be enough). So the tracker also starts over when
- the face stops looking like itself: the normalised correlation of this frame's 16x16 grey thumbnail of the face
  with the last frame's is below MIN_LOOK_SIMILARITY (`update(box, image)`), or
- its distance changes faster than a person moves: MAX_DEPTH_SPEED_M_S between two frames with depth at the face
  (`moved(distance_m, time_ms)`, once the frame is registered).
Both were chosen on development seeds 20-21 of six domains (the tracker alone missed 33 of 128 changes of take
there; these two rules found all 33 and split a face within a take at 25 of 14,715 frames) and measured on fresh
seeds afterwards (docs/deployment.md). A split costs only time: the window starts over. `why` says which rule
started the face; the running registration check is told of the box's changes alone (BOX_CHANGES), as its limits
were validated so.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_fas.face import box_area as _area
from edge_fas.face import iou

__all__ = ["iou", "select", "face_distance_m", "face_look", "look_similarity", "FaceTracker", "BOX_CHANGES"]

LOOK_PX = 16  # the face's thumbnail for "is it still the same face", in pixels a side
# below this correlation with the last frame's thumbnail the face is a new one (within a take on development
# seeds: 1st percentile 0.72, median 0.99; at the changes of take the tracker missed: 28 of 33 below 0.4)
MIN_LOOK_SIMILARITY = 0.4
# a face whose distance changes faster than this (metres per second) is a new one: 0.1 m between two frames at 30 fps
# (within a take on development seeds: 99th percentile 0.013 m between frames)
MAX_DEPTH_SPEED_M_S = 3.0
BOX_CHANGES = ("first", "lost", "moved")  # `why` when the box alone told the face changed


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


def face_look(image: np.ndarray | None, box) -> np.ndarray | None:
    """The face's grey thumbnail (LOOK_PX a side, float32), or None when there is no image or the box is too
    small to say."""
    if image is None or box is None:
        return None
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    face = image[y0:y1, x0:x1]  # only the face is converted: this runs on every frame
    grey = face if face.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(face[..., :3]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey.astype(np.float32), (LOOK_PX, LOOK_PX), interpolation=cv2.INTER_AREA)


def look_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two thumbnails (1: the same pattern, whatever the brightness and contrast); 0 when
    either is flat."""
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-6 else 0.0


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
        self.look: np.ndarray | None = None  # the tracked face's thumbnail on the last frame
        self.last_distance: tuple[float, float | None] | None = None  # (metres, camera ms) on the last frame with depth
        self.why = ""  # why the face last started over: first, lost, moved, look, distance

    def _start(self, box, why: str, look=None):
        self.box, self.look, self.last_distance, self.why = box, look, None, why

    def update(self, box, image: np.ndarray | None = None) -> tuple[tuple[int, int, int, int] | None, bool]:
        """Feed this frame's chosen box (or None) and the image it was found on (for the look; None: no look
        check). Returns (smoothed box or None, changed)."""
        if box is None:
            self.missing += 1
            if self.missing > self.max_missing and self.box is not None:
                self._start(None, "lost")
                return None, True
            return None, False
        self.missing = 0
        new = np.asarray(box, dtype=np.float64)
        if self.box is None or iou(self.box, new) < self.min_iou:
            # a new face (or the first): the caller restarts its decision window
            self._start(new, "first" if self.box is None else "moved", face_look(image, new))
            return tuple(int(round(v)) for v in new), True
        smoothed = self.smoothing * self.box + (1.0 - self.smoothing) * new
        look = face_look(image, smoothed)
        if look is not None and self.look is not None and look_similarity(look, self.look) < MIN_LOOK_SIMILARITY:
            self._start(new, "look", face_look(image, new))  # someone else, or something else, in the same place
            return tuple(int(round(v)) for v in new), True
        self.box, self.look = smoothed, look if look is not None else self.look
        return tuple(int(round(v)) for v in self.box), False

    def moved(self, distance_m: float | None, time_ms: float | None) -> bool:
        """Feed the tracked face's distance on this frame (None: no depth there) and its camera time (None: a source
        without timestamps, taken as 30 fps). True, and the face starts over, when it changed faster than
        MAX_DEPTH_SPEED_M_S since the last frame with depth at the face."""
        if distance_m is None or self.box is None:
            return False
        last, self.last_distance = self.last_distance, (float(distance_m), None if time_ms is None else float(time_ms))
        if last is None:
            return False
        if time_ms is None or last[1] is None:
            seconds = 1.0 / 30
        else:  # at least a camera's fastest frame interval
            seconds = max((float(time_ms) - last[1]) / 1000.0, 1.0 / 120)
        if abs(float(distance_m) - last[0]) / seconds <= MAX_DEPTH_SPEED_M_S:
            return False
        self.why = "distance"
        return True
