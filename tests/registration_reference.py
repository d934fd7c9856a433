"""A slow, plain depth-to-colour registration to check edge_fas.calibration.registration against.

rs.align's geometry written out with OpenCV's own projections, float64 throughout, and the z-buffer as a
Python loop. Every depth pixel with depth has its top-left (x - 0.5, y - 0.5) and bottom-right (x + 0.5,
y + 0.5) corners deprojected at its depth (cv2.undistortPoints for a Brown-Conrady depth camera), moved into
the colour camera (R p + t) and projected: cv2.projectPoints for Brown-Conrady, cv2.fisheye.projectPoints for
Kannala-Brandt, cv2.undistortPoints for RealSense's inverse Brown-Conrady (its coefficients map pixels to
rays). The colour pixels from int(u0 + 0.5) to int(u1 + 0.5) (C truncation; at most MAX_SPLAT a side)
receive the pixel when that whole rectangle is inside the image (or the roi); the smallest
depth << 16 | IR wins. A separate IR imager is sampled (nearest pixel) where the pixel's 3D point projects.

This is how registration.py worked before it was made fast (cv2.projectPoints on every depth pixel of every
frame); it shares no code with the fast path. Meant for small images.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration
from edge_fas.calibration.registration import MAX_SPLAT

CRIT = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)


def _distorted(i: Intrinsics) -> bool:
    return i.model != "none" and any(c != 0 for c in i.coeffs)


def project(i: Intrinsics, pts: np.ndarray) -> np.ndarray:
    """N x 2 pixel coordinates of N x 3 camera points (z > 0)."""
    pts = np.asarray(pts, np.float64).reshape(-1, 1, 3)
    if not _distorted(i):
        return (pts[:, 0, :2] / pts[:, 0, 2:]) * [i.fx, i.fy] + [i.cx, i.cy]
    if i.model == "kannala_brandt4":
        return cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), i.K, i.dist[:4])[0].reshape(-1, 2)
    if i.model == "inverse_brown_conrady":  # ray = distort(pixel): the pixel is the undistorted ray
        xy = (pts[:, 0, :2] / pts[:, 0, 2:]).reshape(-1, 1, 2)
        return cv2.undistortPoints(xy, np.eye(3), i.dist, None, None, i.K, CRIT).reshape(-1, 2)
    return cv2.projectPoints(pts, np.zeros(3), np.zeros(3), i.K, i.dist)[0].reshape(-1, 2)


def deproject(i: Intrinsics, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """N x 3 rays (x / z, y / z, 1) of pixel coordinates."""
    uv = np.stack([np.ravel(px), np.ravel(py)], -1).astype(np.float64).reshape(-1, 1, 2)
    if not _distorted(i):
        xy = (uv.reshape(-1, 2) - [i.cx, i.cy]) / [i.fx, i.fy]
    elif i.model == "kannala_brandt4":
        xy = cv2.fisheye.undistortPoints(uv, i.K, i.dist[:4]).reshape(-1, 2)
    elif i.model == "inverse_brown_conrady":
        n = ((uv.reshape(-1, 2) - [i.cx, i.cy]) / [i.fx, i.fy])
        pts = np.concatenate([n, np.ones((n.shape[0], 1))], 1).reshape(-1, 1, 3)
        xy = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.eye(3), i.dist)[0].reshape(-1, 2)
    else:
        xy = cv2.undistortPoints(uv, i.K, i.dist, None, None, None, CRIT).reshape(-1, 2)
    return np.concatenate([xy, np.ones((xy.shape[0], 1))], 1)


def register(depth: np.ndarray, cal: RigCalibration, ir: np.ndarray | None = None, colocated: bool = True,
             roi: tuple[int, int, int, int] | None = None, depth_scale: float | None = None):
    """(registered depth, registered IR or None) in the colour camera's pixels."""
    dI, cI, ext = cal.depth, cal.color, cal.depth_to_color
    scale = cal.depth_scale if depth_scale is None else depth_scale
    h, w = depth.shape
    cw, ch = cI.width, cI.height
    x0, y0, x1, y1 = (0, 0, cw, ch) if roi is None else (max(0, roi[0]), max(0, roi[1]), min(cw, roi[2]),
                                                         min(ch, roi[3]))
    ys, xs = np.nonzero(depth)
    z = depth[ys, xs].astype(np.float64) * scale
    corners = []
    for off in (-0.5, 0.5):
        p = deproject(dI, xs + off, ys + off) * z[:, None] @ ext.R.T + ext.t
        front = p[:, 2] > 1e-3
        uv = np.full((p.shape[0], 2), -1e9)
        uv[front] = project(cI, p[front])
        corners.append(np.trunc(uv + 0.5).astype(np.int64))
    values = None
    if ir is not None and colocated:
        values = ir[ys, xs].astype(np.int64)
    elif ir is not None:
        values = _ir_values(ir, cal, xs, ys, z)
    best = np.full((ch, cw), np.iinfo(np.int64).max, np.int64)
    (u0s, v0s), (u1s, v1s) = corners[0].T, corners[1].T
    for k in range(xs.size):
        u0, v0, u1, v1 = u0s[k], v0s[k], u1s[k], v1s[k]
        if u0 < x0 or v0 < y0 or u1 >= x1 or v1 >= y1 or u1 < u0 or v1 < v0:
            continue
        key = int(depth[ys[k], xs[k]]) << 16 | (int(values[k]) if values is not None else 0)
        for v in range(v0, min(v1, v0 + MAX_SPLAT - 1) + 1):
            for u in range(u0, min(u1, u0 + MAX_SPLAT - 1) + 1):
                if key < best[v, u]:
                    best[v, u] = key
    hole = best == np.iinfo(np.int64).max
    out_depth = np.where(hole, 0, best >> 16).astype(np.uint16)
    out_ir = None if ir is None else np.where(hole, 0, best & 0xFFFF).astype(ir.dtype)
    return out_depth, out_ir


def _ir_values(ir: np.ndarray, cal: RigCalibration, xs, ys, z) -> np.ndarray:
    """IR at each depth pixel's 3D point, for an IR imager that is not the depth imager."""
    p = deproject(cal.depth, xs, ys) * z[:, None]
    to_ir: Extrinsics = cal.ir_to_color.inverse()
    q = (p @ cal.depth_to_color.R.T + cal.depth_to_color.t) @ to_ir.R.T + to_ir.t
    out = np.zeros(xs.size, np.int64)
    front = q[:, 2] > 0
    uv = np.rint(project(cal.ir, q[front])).astype(np.int64)
    inside = (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < ir.shape[1]) & (uv[:, 1] < ir.shape[0])
    idx = np.flatnonzero(front)[inside]
    out[idx] = ir[uv[inside, 1], uv[inside, 0]]
    return out
