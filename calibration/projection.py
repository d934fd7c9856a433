"""Projection and deprojection of one camera: the exact OpenCV forms, and a fast per-frame form.

`rays(intr, px, py)` deprojects pixels to normalised rays and `project(intr, points)` projects camera points
to pixels, both exactly (OpenCV's iterative undistortion where a model needs it). They are cheap enough once
per calibration, not per frame: `cv2.projectPoints` on every depth pixel costs ~0.1 s a frame.

`Projector(intr)` maps normalised image-plane coordinates (x/z, y/z) to pixels for many points at a time,
in float32 and in place, with one code path for numpy arrays and torch tensors:
- "none": the pinhole;
- "brown_conrady" with up to 5 coefficients (OpenCV's k1, k2, p1, p2, k3; what `edge-fas calibrate`, the
  RealSense and Orbbec SDKs report): OpenCV's polynomial in closed form, exact;
- "kannala_brandt4": OpenCV's fisheye polynomial in theta, in closed form, exact;
- anything else ("inverse_brown_conrady", whose projection is an iterative undistortion, or a rational /
  thin-prism Brown-Conrady with 8 to 14 coefficients): a table of the exact projection's offset from the
  pinhole, one cell per pinhole pixel over the region that lands in the image (plus a margin), read with
  bilinear interpolation (cv2.remap; torch's grid_sample): a few thousandths of a pixel at most, at the
  image edges with strong coefficients. A point outside the table lands outside the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_fas.calibration.rig import Intrinsics

__all__ = ["distorted", "rays", "project", "pinhole_box", "Projector"]

TABLE_MARGIN_PX = 16  # the table reaches this far beyond the image on every side
TABLE_MAX_CELLS = 4096  # per side; a wider region (a fisheye's pinhole plane) gets coarser cells
OUTSIDE_PX = 1e7  # where a point off the table lands: far outside any image, still inside int32


def distorted(intr: Intrinsics) -> bool:
    return intr.model != "none" and any(abs(c) > 0 for c in intr.coeffs)


def _distort(xy: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Brown-Conrady (OpenCV order) or Kannala-Brandt applied to normalised coordinates, N x 2."""
    pts = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1).reshape(-1, 1, 3).astype(np.float64)
    if intr.model == "kannala_brandt4":
        out, _ = cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), np.eye(3), intr.dist[:4])
    else:
        out, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), np.eye(3), intr.dist)
    return out.reshape(-1, 2)


def _undistort(xy: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """The inverse of _distort (iterative), N x 2 normalised coordinates."""
    pts = xy.reshape(-1, 1, 2).astype(np.float64)
    if intr.model == "kannala_brandt4":
        return cv2.fisheye.undistortPoints(pts, np.eye(3), intr.dist[:4]).reshape(-1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
    return cv2.undistortPoints(pts, np.eye(3), intr.dist, None, None, None, crit).reshape(-1, 2)


def rays(intr: Intrinsics, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Normalised rays (x/z, y/z, 1) of pixel coordinates, N x 3 float64.

    brown_conrady and kannala_brandt4 coefficients describe pixel = distort(ray), so deprojection
    undistorts; RealSense's inverse_brown_conrady describes ray = distort(pixel), so it distorts.
    """
    xy = np.stack([(np.ravel(px) - intr.cx) / intr.fx, (np.ravel(py) - intr.cy) / intr.fy], -1)
    if distorted(intr):
        xy = _distort(xy, intr) if intr.model == "inverse_brown_conrady" else _undistort(xy, intr)
    return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)


def project(intr: Intrinsics, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of N x 3 camera points (z > 0 assumed by the caller), exact, float64."""
    xy = pts[:, :2] / pts[:, 2:3]
    if distorted(intr):
        xy = _undistort(xy, intr) if intr.model == "inverse_brown_conrady" else _distort(xy, intr)
    return xy[:, 0] * intr.fx + intr.cx, xy[:, 1] * intr.fy + intr.cy


class Projector:
    """Fast projection of normalised coordinates to pixels for one camera (see the module docstring)."""

    SCRATCH = 5  # scratch arrays project_ needs

    def __init__(self, intr: Intrinsics):
        self.intr = intr
        n = len(intr.coeffs)
        if not distorted(intr):
            self.kind = "pinhole"
        elif intr.model == "brown_conrady" and n <= 5:
            self.kind = "brown_conrady"
            self.k = _f32((tuple(intr.coeffs) + (0.0,) * 5)[:5])  # k1, k2, p1, p2, k3
        elif intr.model == "kannala_brandt4":
            self.kind = "kannala_brandt4"
            self.k = _f32((tuple(intr.coeffs) + (0.0,) * 4)[:4])
        else:
            self.kind = "table"
            self._build_table()
            self.on_device: dict = {}  # torch device -> the table as a tensor

    def _build_table(self) -> None:
        """Offsets (exact pixel - pinhole pixel) on a grid of pinhole pixels covering the image and a margin."""
        i, m = self.intr, TABLE_MARGIN_PX
        lo_u, lo_v, hi_u, hi_v = pinhole_box(i, -m, -m, i.width + m, i.height + m)
        lo_u, lo_v, hi_u, hi_v = np.floor(lo_u) - m, np.floor(lo_v) - m, np.ceil(hi_u) + m, np.ceil(hi_v) + m
        step = max(1.0, (hi_u - lo_u) / TABLE_MAX_CELLS, (hi_v - lo_v) / TABLE_MAX_CELLS)
        gu = lo_u + step * np.arange(int((hi_u - lo_u) / step) + 2)
        gv = lo_v + step * np.arange(int((hi_v - lo_v) / step) + 2)
        uu, vv = np.meshgrid(gu, gv)
        x, y = (uu.ravel() - i.cx) / i.fx, (vv.ravel() - i.cy) / i.fy
        eu, ev = project(i, np.stack([x, y, np.ones_like(x)], -1))
        self.table = [np.ascontiguousarray((e - g.ravel()).reshape(gv.size, gu.size), np.float32)
                      for e, g in ((eu, uu), (ev, vv))]
        # normalised coordinate -> table cell: cell = (x * f + c - lo) / step
        self.cell = _f32((i.fx / step, (i.cx - lo_u) / step, i.fy / step, (i.cy - lo_v) / step))

    def pixels(self, x, y, offset: float = 0.0):
        """Pixel coordinates (+ offset) of normalised coordinates x, y (new arrays; see project_)."""
        def fresh(a):
            return a.copy() if isinstance(a, np.ndarray) else a.clone()

        x, y = fresh(x), fresh(y)
        scratch = [fresh(x) for _ in range(self.SCRATCH)]
        self.project_(x, y, offset, scratch)
        return x, y

    def project_(self, x, y, offset: float, s: list) -> None:
        """In place: normalised coordinates x, y (float32 numpy arrays, or torch tensors, of one shape;
        2-D for a table camera with numpy) become pixel coordinates + offset. s: SCRATCH arrays like x."""
        i = self.intr
        mul, add = (np.multiply, np.add) if isinstance(x, np.ndarray) else (_torch().mul, _torch().add)
        if self.kind == "brown_conrady":
            # OpenCV: xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2), yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y,
            # radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3; regrouped as xd = x F + p2 r2, yd = y F + p1 r2 with
            # F = radial + 2 p2 x + 2 p1 y (fewer passes)
            k1, k2, p1, p2, k3 = self.k
            r2, f, t = s[:3]
            mul(x, x, out=r2)
            mul(y, y, out=t)
            r2 += t
            mul(r2, k3, out=f)
            f += k2
            f *= r2
            f += k1
            f *= r2
            f += 1.0
            mul(x, 2.0 * p2, out=t)
            f += t
            mul(y, 2.0 * p1, out=t)
            f += t
            x *= f
            mul(r2, p2, out=t)
            x += t
            y *= f
            mul(r2, p1, out=t)
            y += t
        elif self.kind == "kannala_brandt4":
            k1, k2, k3, k4 = self.k
            r, theta, t2, t = s[:4]
            mul(x, x, out=r)
            mul(y, y, out=t)
            r += t
            _sqrt_(r)
            _at_least_(r, 1e-12)  # theta / r -> 1 on the axis, no 0 / 0
            _atan(r, out=theta)
            mul(theta, theta, out=t2)
            # theta_d / r = theta (1 + k1 t2 + k2 t2^2 + k3 t2^3 + k4 t2^4) / r
            mul(t2, k4, out=t)
            t += k3
            t *= t2
            t += k2
            t *= t2
            t += k1
            t *= t2
            t += 1.0
            t *= theta
            t /= r
            x *= t
            y *= t
        elif self.kind == "table":
            su, ou, sv, ov = self.cell
            mu, mv, du, dv = s[:4]
            mul(x, su, out=mu)
            mu += ou
            mul(y, sv, out=mv)
            mv += ov
            self._lookup(mu, mv, du, dv)
        x *= _f32((i.fx,))[0]
        x += _f32((i.cx + offset,))[0]
        y *= _f32((i.fy,))[0]
        y += _f32((i.cy + offset,))[0]
        if self.kind == "table":
            x += du
            y += dv

    def _lookup(self, mu, mv, du, dv) -> None:
        """Bilinear table offsets at cells (mu, mv) into du, dv; off the table: OUTSIDE_PX."""
        if isinstance(mu, np.ndarray):
            for table, out in zip(self.table, (du, dv)):
                cv2.remap(table, mu, mv, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=OUTSIDE_PX)
            return
        torch = _torch()
        th, tw = self.table[0].shape
        tables = self.on_device.get(mu.device)
        if tables is None:  # uploaded once per device
            tables = self.on_device[mu.device] = torch.as_tensor(np.stack(self.table), device=mu.device)[None]
        gx = mu * (2.0 / (tw - 1)) - 1  # align_corners=True: -1 and 1 are the first and last cells
        gy = mv * (2.0 / (th - 1)) - 1
        grid = torch.stack([gx, gy], -1).reshape(1, 1, -1, 2)
        d = torch.nn.functional.grid_sample(tables, grid, mode="bilinear", padding_mode="border",
                                            align_corners=True)[0, :, 0]
        off = ((gx.abs() > 1) | (gy.abs() > 1)).reshape(-1)
        du.copy_(torch.where(off, torch.full_like(d[0], OUTSIDE_PX), d[0]).reshape(du.shape))
        dv.copy_(torch.where(off, torch.full_like(d[1], OUTSIDE_PX), d[1]).reshape(dv.shape))


def pinhole_box(intr: Intrinsics, x0: float, y0: float, x1: float, y1: float,
                step: float = 4.0) -> tuple[float, float, float, float]:
    """Bounding box, in pinhole pixels (x / z * fx + cx), of the pixel rectangle [x0, x1] x [y0, y1] of a
    possibly distorted camera: its border sampled every `step` pixels, deprojected exactly."""
    if not distorted(intr):
        return x0, y0, x1, y1
    us = np.linspace(x0, x1, max(2, int((x1 - x0) / step) + 2))
    vs = np.linspace(y0, y1, max(2, int((y1 - y0) / step) + 2))
    ring_u = np.concatenate([us, us, np.full(vs.size, x0), np.full(vs.size, x1)])
    ring_v = np.concatenate([np.full(us.size, y0), np.full(us.size, y1), vs, vs])
    r = rays(intr, ring_u, ring_v)
    pu, pv = r[:, 0] * intr.fx + intr.cx, r[:, 1] * intr.fy + intr.cy
    return float(pu.min()), float(pv.min()), float(pu.max()), float(pv.max())


def _f32(values) -> tuple[float, ...]:
    """Python floats rounded to float32: weak scalars that keep numpy and torch arithmetic in float32."""
    return tuple(float(np.float32(v)) for v in values)


def _torch():
    import torch
    return torch


def _sqrt_(a) -> None:
    if isinstance(a, np.ndarray):
        np.sqrt(a, out=a)
    else:
        a.sqrt_()


def _at_least_(a, lo: float) -> None:
    if isinstance(a, np.ndarray):
        np.maximum(a, lo, out=a)
    else:
        a.clamp_(min=lo)


def _atan(a, out) -> None:
    if isinstance(a, np.ndarray):
        np.arctan(a, out=out)
    else:
        _torch().atan(a, out=out)
