"""Registration check a person can run on their rig, and stream timing checks.

`registration_check(frames)` registers depth to colour, finds the depth discontinuities (object borders)
and the colour edges, and searches the image shift (up to MAX_SHIFT_PX) that brings the depth borders
closest to colour edges (mean distance). The length of that shift is the misalignment in pixels: ~0 on a
well calibrated rig, several pixels with a wrong baseline or rotation. A shift is used rather than the
raw edge distance because registered depth borders sit a pixel or two outside the object on every side
(splatting and the depth camera's own edge fattening), which a shift does not mistake for misalignment;
that raw median distance is reported too. The overlay shows colour edges green, depth edges red.
`stream_skew_ms(frames)` is the spread of the streams' timestamps in one frame set; `check_skew` flags a
set whose spread exceeds a bound (decision.max_skew_ms in the config).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_fas.calibration.registration import register_to_color
from edge_fas.calibration.rig import RigCalibration
from edge_fas.errors import CalibrationError

__all__ = ["RegistrationCheck", "registration_check", "stream_skew_ms", "check_skew"]

DEPTH_STEP_M = 0.05  # a depth jump larger than this between neighbours is an object border
MAX_SHIFT_PX = 16


@dataclass
class RegistrationCheck:
    misalignment_px: float  # length of the best-fitting shift of depth borders onto colour edges
    shift_px: tuple[int, int]  # that shift (dx, dy): where the depth would have to move
    edge_distance_px: float  # median distance of depth-border pixels to the nearest colour edge, unshifted
    edge_pixels: int
    overlay: np.ndarray  # H x W x 3 RGB


def _depth_edges(depth_m: np.ndarray) -> np.ndarray:
    """Valid pixels on the near side of a depth border: a neighbour more than DEPTH_STEP_M farther, or
    inside a hole wider than a few pixels (the shadow a border casts); isolated dropouts do not count."""
    valid = depth_m > 0
    holes = cv2.morphologyEx((~valid).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    far = np.where(valid, depth_m, np.where(holes, np.float32(100.0), depth_m)).astype(np.float32)
    far[~valid & ~holes] = 0.0  # a lone dropout neither makes nor hides a border
    neighbour_max = cv2.dilate(far, np.ones((3, 3), np.uint8))
    return valid & (neighbour_max - depth_m > DEPTH_STEP_M)


def registration_check(frames, calibration: RigCalibration | None = None, box=None) -> RegistrationCheck:
    """Edge misalignment between colour and registered depth (optionally inside box = x0, y0, x1, y1)."""
    if frames.rgb is None or frames.depth is None:
        raise CalibrationError("registration check needs colour and depth in the same frame set")
    reg = register_to_color(frames, calibration)
    gray = cv2.cvtColor(reg.rgb, cv2.COLOR_RGB2GRAY)
    color_edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 1.2), 40, 100) > 0
    depth_edges = _depth_edges(reg.depth_m())
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        mask = np.zeros_like(depth_edges)
        mask[max(0, y0):y1, max(0, x0):x1] = True
        depth_edges &= mask
    if not depth_edges.any() or not color_edges.any():
        raise CalibrationError("registration check: no depth border or no colour edge in view; put an object "
                               "(a face, a box) in front of a background at least 10 cm behind it")
    # distance of every pixel to the nearest colour edge
    dist = cv2.distanceTransform((~color_edges).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(depth_edges)
    h, w = dist.shape
    best, shift = np.inf, (0, 0)
    for dy in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1):
        for dx in range(-MAX_SHIFT_PX, MAX_SHIFT_PX + 1):
            cost = dist[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)].mean()
            if cost < best - 1e-6 or (abs(cost - best) <= 1e-6 and abs(dx) + abs(dy) < abs(shift[0]) + abs(shift[1])):
                best, shift = cost, (dx, dy)
    overlay = (reg.rgb.astype(np.float32) * 0.6).astype(np.uint8)
    overlay[color_edges] = (0, 255, 0)
    overlay[depth_edges] = (255, 0, 0)
    return RegistrationCheck(float(np.hypot(*shift)), shift, float(np.median(dist[depth_edges])),
                             int(depth_edges.sum()), overlay)


def stream_skew_ms(frames) -> float:
    """Largest minus smallest stream timestamp of one frame set (0 with fewer than two streams)."""
    stamps = [float(v) for v in frames.timestamps.values()]
    return max(stamps) - min(stamps) if len(stamps) > 1 else 0.0


def check_skew(frames, max_skew_ms: float) -> tuple[bool, float]:
    """(within bound, skew ms); a set with skew above max_skew_ms should not be judged as one instant."""
    skew = stream_skew_ms(frames)
    return skew <= max_skew_ms, skew
