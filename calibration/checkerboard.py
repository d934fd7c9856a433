"""Checkerboard calibration of a colour + IR rig (the IR imager is the depth imager) with OpenCV.

    cal, report = calibrate_rig(color_views, ir_views, pattern=(9, 6), square_m=0.025)
    cal.save("rig.yaml")          # RigCalibration, source "checkerboard"; report has the errors

Each view is one instant seen by both cameras (emitter off, so the IR image has no speckle). Corners are
found and refined per image; intrinsics come from cv2.calibrateCamera per camera, the IR-to-colour
transform from cv2.stereoCalibrate with those intrinsics fixed. A result is refused with the reason
when too few views show the whole board in both cameras, or when the reprojection error is too large
(blurred or moving board, wrong square size). `render_views` makes synthetic views of a board with
known intrinsics and extrinsics, for tests and for trying the tool without a rig.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.errors import CalibrationError

__all__ = ["calibrate_rig", "find_corners", "render_views", "board_points", "CalibrationReport", "MIN_VIEWS"]

MIN_VIEWS = 6
MAX_RMS_PX = 1.0


@dataclass
class CalibrationReport:
    views_used: int
    views_rejected: dict[int, str] = field(default_factory=dict)  # view index -> why
    rms_color_px: float = 0.0
    rms_ir_px: float = 0.0
    rms_stereo_px: float = 0.0

    def to_dict(self) -> dict:
        return {"views_used": self.views_used, "views_rejected": {str(k): v for k, v in self.views_rejected.items()},
                "rms_color_px": self.rms_color_px, "rms_ir_px": self.rms_ir_px, "rms_stereo_px": self.rms_stereo_px}


def board_points(pattern: tuple[int, int], square_m: float) -> np.ndarray:
    """Inner-corner coordinates on the board plane (z = 0), metres, in OpenCV's corner order."""
    cols, rows = pattern
    grid = np.zeros((rows * cols, 3), np.float32)
    grid[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * square_m
    return grid


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.dtype != np.uint8:  # 16-bit IR: stretch to 8 bit for the corner finder
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


def find_corners(img: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner corners (N x 1 x 2 float32), or None when the whole board is not seen."""
    gray = _gray(img)
    found, corners = cv2.findChessboardCorners(gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH
                                               | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        return None
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    return cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), crit)


def _intrinsics(K: np.ndarray, dist: np.ndarray, size: tuple[int, int]) -> Intrinsics:
    d = np.asarray(dist, np.float64).ravel()[:5]
    return Intrinsics(size[0], size[1], float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                      "brown_conrady", tuple(d.tolist()))


def calibrate_rig(color_views: list[np.ndarray], ir_views: list[np.ndarray], pattern: tuple[int, int] = (9, 6),
                  square_m: float = 0.025, max_rms_px: float = MAX_RMS_PX, min_views: int = MIN_VIEWS,
                  depth_scale: float = 0.001) -> tuple[RigCalibration, CalibrationReport]:
    if len(color_views) != len(ir_views):
        raise CalibrationError(f"calibrate: {len(color_views)} colour views but {len(ir_views)} IR views; "
                               "each view needs one image from each camera taken at the same instant")
    if square_m <= 0:
        raise CalibrationError(f"calibrate: square size {square_m} m must be positive (measure the printed board)")
    obj = board_points(pattern, square_m)
    report = CalibrationReport(views_used=0)
    pts_c, pts_i = [], []
    for k, (c, i) in enumerate(zip(color_views, ir_views)):
        cc, ci = find_corners(c, pattern), find_corners(i, pattern)
        if cc is None or ci is None:
            where = " and ".join(n for n, v in (("colour", cc), ("IR", ci)) if v is None)
            report.views_rejected[k] = f"board not seen whole in {where}"
            continue
        pts_c.append(cc)
        pts_i.append(ci)
    report.views_used = len(pts_c)
    if report.views_used < min_views:
        raise CalibrationError(
            f"calibrate: only {report.views_used} of {len(color_views)} views show the whole {pattern[0]}x{pattern[1]} "
            f"board in both cameras (need {min_views}); reasons: {report.views_rejected}. Show the board whole, "
            "closer and at varied angles, with the IR emitter off and enough IR light")
    size_c = (color_views[0].shape[1], color_views[0].shape[0])
    size_i = (ir_views[0].shape[1], ir_views[0].shape[0])
    objs = [obj] * len(pts_c)
    flags = cv2.CALIB_FIX_K3
    rms_c, Kc, dc, _, _ = cv2.calibrateCamera(objs, pts_c, size_c, None, None, flags=flags)
    rms_i, Ki, di, _, _ = cv2.calibrateCamera(objs, pts_i, size_i, None, None, flags=flags)
    # camera 1 = IR, camera 2 = colour: x_color = R x_ir + T, i.e. the IR (= depth) to colour transform
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-6)
    rms_s, _, _, _, _, R, T, _, _ = cv2.stereoCalibrate(objs, pts_i, pts_c, Ki, di, Kc, dc, size_i,
                                                        criteria=crit, flags=cv2.CALIB_FIX_INTRINSIC)
    report.rms_color_px, report.rms_ir_px, report.rms_stereo_px = float(rms_c), float(rms_i), float(rms_s)
    worst = max(rms_c, rms_i, rms_s)
    if worst > max_rms_px:
        raise CalibrationError(
            f"calibrate: reprojection error {worst:.2f} px exceeds {max_rms_px:.2f} px (colour {rms_c:.2f}, IR "
            f"{rms_i:.2f}, stereo {rms_s:.2f}); likely a blurred or moving board, a bent print, or a wrong "
            "--square size. Retake sharper views with the board held still")
    ir = _intrinsics(Ki, di, size_i)
    to_color = Extrinsics(R, T.ravel())
    cal = RigCalibration(color=_intrinsics(Kc, dc, size_c), depth=ir, ir=ir, depth_to_color=to_color,
                         ir_to_color=to_color, depth_scale=depth_scale, source="checkerboard")
    return cal, report


# -- synthetic views -------------------------------------------------------------------------------
def _board_texture(pattern: tuple[int, int], square_m: float, px_per_square: int = 40, margin_squares: float = 1.0):
    cols, rows = pattern[0] + 1, pattern[1] + 1  # squares = inner corners + 1
    m = int(margin_squares * px_per_square)
    tex = np.full((rows * px_per_square + 2 * m, cols * px_per_square + 2 * m), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                tex[m + r * px_per_square:m + (r + 1) * px_per_square, m + c * px_per_square:m + (c + 1) * px_per_square] = 0
    # texture pixel (u, v) -> board metres: the first inner corner is at texture (m + px, m + px)
    scale = square_m / px_per_square
    S = np.array([[scale, 0, -(m + px_per_square - 0.5) * scale], [0, scale, -(m + px_per_square - 0.5) * scale],
                  [0, 0, 1]])
    return tex, S


def _view(tex, S, intr: Intrinsics, R, t, rng, noise: float, blur: float) -> np.ndarray:
    H = intr.K @ np.column_stack([R[:, 0], R[:, 1], t]) @ S
    img = cv2.warpPerspective(tex, H, (intr.width, intr.height), flags=cv2.INTER_AREA, borderValue=128)
    img = img.astype(np.float32) * 0.8 + 25
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img += rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_views(color: Intrinsics, ir: Intrinsics, ir_to_color: Extrinsics, n: int = 12,
                 pattern: tuple[int, int] = (9, 6), square_m: float = 0.025, seed: int = 0, noise: float = 2.0,
                 blur: float = 0.6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n (colour RGB, IR gray) view pairs of a board held 0.3-0.55 m away at varied angles."""
    rng = np.random.default_rng(seed)
    tex, S = _board_texture(pattern, square_m)
    centre = np.array([(pattern[0] - 1) * square_m / 2, (pattern[1] - 1) * square_m / 2, 0.0])
    color_to_ir = ir_to_color.inverse()
    cs, irs = [], []
    for _ in range(n):
        rvec = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), rng.uniform(-0.2, 0.2)])
        R, _ = cv2.Rodrigues(rvec)
        target = np.array([rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03), rng.uniform(0.3, 0.55)])
        t = target - R @ centre  # board centre lands at the target point (colour frame)
        c = _view(tex, S, color, R, t, rng, noise, blur)
        cs.append(cv2.cvtColor(c, cv2.COLOR_GRAY2RGB))
        Ri, ti = color_to_ir.R @ R, color_to_ir.R @ t + color_to_ir.t
        irs.append(_view(tex, S, ir, Ri, ti, rng, noise, blur))
    return cs, irs
