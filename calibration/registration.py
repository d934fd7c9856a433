"""Registration of depth and IR into the colour camera: `register_to_color(frames) -> FrameSet`.

A vectorised z-buffer forward warp with the same geometry as librealsense's rs.align (depth to colour):
every depth pixel is a small square whose top-left and bottom-right corners are deprojected at its depth,
moved into the colour camera and projected; the colour pixels of that rectangle receive the depth value,
and where several depth pixels land on one colour pixel the nearest surface wins. Depth pixels whose
rectangle leaves the colour image are dropped, colour pixels nothing lands on stay 0 (holes are not
filled: a hole means "no measurement", never a guess). Values are the depth camera's own raw z, as rs.align
gives (not z in the colour camera; they differ by under a millimetre for a rig turned by tenths of a
degree). Like rs.align, the corner splat covers at least 2 x 2 colour pixels, so near surfaces grow by
about a pixel into the background. IR follows the same geometry: when the IR imager is the depth imager (same intrinsics, same
transform, as on a D4xx or an OpenNI sensor) each depth pixel carries its own IR value; otherwise the IR
value is looked up where the depth pixel's 3D point projects into the IR camera.

The per-pixel rays and rotated rays are cached per calibration, so a frame costs a few array passes;
roi=(x0, y0, x1, y1) limits the output to a colour-pixel region (a live pipeline's face crop).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.errors import CalibrationError

if TYPE_CHECKING:  # edge_fas.types imports this package (calibration.rig); no import at run time
    from edge_fas.types import FrameSet

__all__ = ["register_to_color", "Registrar", "colocated"]

MAX_SPLAT = 4  # widest rectangle (pixels) one depth pixel may cover; larger means a bad calibration
NEAR_M = 0.1  # nearest depth considered when precomputing which depth pixels can reach the colour image


def _intr_key(i: Intrinsics) -> tuple:
    return (i.width, i.height, i.fx, i.fy, i.cx, i.cy, i.model, i.coeffs)


def _distorted(i: Intrinsics) -> bool:
    return i.model != "none" and any(abs(c) > 0 for c in i.coeffs)


def colocated(cal: RigCalibration) -> bool:
    """True when the IR imager is the depth imager (IR pixels are depth pixels)."""
    if cal.ir is None or cal.depth is None:
        return cal.ir is None
    return (_intr_key(cal.ir) == _intr_key(cal.depth)
            and np.allclose(cal.ir_to_color.R, cal.depth_to_color.R, atol=1e-9)
            and np.allclose(cal.ir_to_color.t, cal.depth_to_color.t, atol=1e-9))


def _distort(xy: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Brown-Conrady (OpenCV order) applied to normalised coordinates, N x 2."""
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


def _rays(intr: Intrinsics, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Normalised rays (x/z, y/z, 1) of pixel coordinates, N x 3 float64.

    brown_conrady and kannala_brandt4 coefficients describe pixel = distort(ray), so deprojection
    undistorts; RealSense's inverse_brown_conrady describes ray = distort(pixel), so it distorts.
    """
    xy = np.stack([(px.ravel() - intr.cx) / intr.fx, (py.ravel() - intr.cy) / intr.fy], -1)
    if _distorted(intr):
        xy = _distort(xy, intr) if intr.model == "inverse_brown_conrady" else _undistort(xy, intr)
    return np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)


def _project(intr: Intrinsics, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of N x 3 camera points (z > 0 assumed by the caller)."""
    xy = pts[:, :2] / pts[:, 2:3]
    if _distorted(intr):
        xy = _undistort(xy, intr) if intr.model == "inverse_brown_conrady" else _distort(xy, intr)
    return xy[:, 0] * intr.fx + intr.cx, xy[:, 1] * intr.fy + intr.cy


class Registrar:
    """Precomputed depth-to-colour warp for one calibration (see the module docstring)."""

    def __init__(self, depth: Intrinsics, color: Intrinsics, depth_to_color: Extrinsics,
                 ir: Intrinsics | None = None, ir_to_color: Extrinsics | None = None):
        self.depth, self.color, self.ext = depth, color, depth_to_color
        h, w = depth.height, depth.width
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        R = depth_to_color.R
        # depth pixels that can land in the colour image at some depth from NEAR_M to infinity (the ray's
        # image in the colour camera runs from its NEAR_M point to its vanishing point); the rest are skipped
        centre = _rays(depth, xs, ys) @ R.T
        margin = 2 * MAX_SPLAT
        maybe = np.zeros(h * w, bool)
        ends = []
        for far in (False, True):
            p = centre if far else centre * NEAR_M + depth_to_color.t
            ok = p[:, 2] > 1e-9
            u, v = _project(color, np.where(ok[:, None], p, 1.0))
            maybe |= ok & (u > -margin) & (v > -margin) & (u < color.width + margin) & (v < color.height + margin)
            big = np.float64(1e9)  # an end behind the camera: the segment may reach anywhere
            ends.append((np.where(ok, u, -big), np.where(ok, v, -big), np.where(ok, u, big), np.where(ok, v, big)))
        self.cand = np.flatnonzero(maybe)
        # bounding box of each candidate's path through the colour image (its NEAR_M and far ends), for roi
        (a_u0, a_v0, a_u1, a_v1), (b_u0, b_v0, b_u1, b_v1) = ends
        self.reach = [np.minimum(a_u0, b_u0)[self.cand] - margin, np.minimum(a_v0, b_v0)[self.cand] - margin,
                      np.maximum(a_u1, b_u1)[self.cand] + margin, np.maximum(a_v1, b_v1)[self.cand] + margin]
        self.reach = [r.astype(np.float32) for r in self.reach]
        # rotated rays of the top-left and bottom-right corners of those depth pixels, one contiguous
        # float32 array per coordinate: P_color = z * (R r) + t
        self.r0 = [np.ascontiguousarray(c[self.cand], np.float32)
                   for c in (_rays(depth, xs - 0.5, ys - 0.5) @ R.T).T]
        self.r1 = [np.ascontiguousarray(c[self.cand], np.float32)
                   for c in (_rays(depth, xs + 0.5, ys + 0.5) @ R.T).T]
        self.t = [np.float32(v) for v in depth_to_color.t]
        self.ir = ir
        # IR camera seen from the depth camera, for a separate IR imager
        self.depth_to_ir = None
        if ir is not None and ir_to_color is not None:
            self.depth_to_ir = ir_to_color.inverse()
            self.rays = _rays(depth, xs, ys).astype(np.float32)

    def _corner(self, rays: list[np.ndarray], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = rays[0] * z + self.t[0]
        y = rays[1] * z + self.t[1]
        w = rays[2] * z + self.t[2]
        # points closer than 1 mm (empty pixels, points behind the camera) are pushed far out of the image;
        # that also keeps |u|, |v| well inside int32 without a clip
        np.maximum(w, np.float32(1e-3), out=w)
        if _distorted(self.color):
            u, v = _project(self.color, np.stack([x, y, w], -1).astype(np.float64))
            lim = 1e6
            u = np.clip(np.nan_to_num(u + 0.5, nan=-lim), -lim, lim)
            v = np.clip(np.nan_to_num(v + 0.5, nan=-lim), -lim, lim)
        else:
            inv = np.float32(1.0) / w
            u = x * inv * np.float32(self.color.fx) + np.float32(self.color.cx + 0.5)
            v = y * inv * np.float32(self.color.fy) + np.float32(self.color.cy + 0.5)
        # C-style truncation of (p + 0.5), as rs.align does
        return u.astype(np.int32), v.astype(np.int32)

    def warp(self, depth: np.ndarray, depth_scale: float, ir: np.ndarray | None = None,
             ir_separate: np.ndarray | None = None,
             roi: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Depth (and IR) in colour pixels. `ir` is co-located with depth; `ir_separate` needs its own lookup.
        roi = (x0, y0, x1, y1) in colour pixels: only depth pixels landing wholly inside it are warped."""
        cw, ch = self.color.width, self.color.height
        x0, y0, x1, y1 = (0, 0, cw, ch) if roi is None else (max(0, int(roi[0])), max(0, int(roi[1])),
                                                             min(cw, int(roi[2])), min(ch, int(roi[3])))
        cand, r0, r1 = self.cand, self.r0, self.r1
        if roi is not None:  # only depth pixels whose path through the colour image meets the roi
            ru0, rv0, ru1, rv1 = self.reach
            near = np.flatnonzero((ru0 < x1) & (ru1 > x0) & (rv0 < y1) & (rv1 > y0))
            cand, r0, r1 = cand[near], [c[near] for c in r0], [c[near] for c in r1]
        flat = depth.reshape(-1)[cand]
        z = flat.astype(np.float32) * np.float32(depth_scale)
        # passes over all candidates are cheaper than gathering the valid pixels first
        u0, v0 = self._corner(r0, z)
        u1, v1 = self._corner(r1, z)
        sw = u1 - u0 + 1
        sh = v1 - v0 + 1
        keep = (flat > 0) & (u0 >= x0) & (v0 >= y0) & (u1 < x1) & (v1 < y1) & (sw > 0) & (sh > 0)
        sel = np.flatnonzero(keep)
        idx = cand[sel]
        raw = flat[sel]
        base = v0[sel] * cw + u0[sel]
        sw = np.minimum(sw[sel], MAX_SPLAT)
        sh = np.minimum(sh[sel], MAX_SPLAT)

        values = None
        if ir is not None:
            values = ir.reshape(-1)[idx]
        elif ir_separate is not None and self.depth_to_ir is not None:
            values = self._ir_lookup(ir_separate, idx, raw, depth_scale)

        # splat: group the depth pixels by rectangle size (a few groups), then every (dy, dx) offset of a
        # group is one contiguous slice; all targets go through one minimum.at, nearest surface wins. With
        # IR, the key is depth << 16 | IR, so the same minimum carries the nearest surface's IR value.
        key = raw.astype(np.uint32)
        if values is not None:
            key = (key << 16) | values.astype(np.uint32)
        code = (sh * 8 + sw).astype(np.uint8)
        order = np.argsort(code, kind="stable")
        code, base, key = code[order], base[order], key[order]
        cuts = np.flatnonzero(np.diff(code)) + 1
        targets, keys = [], []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, code.size]) if code.size else ():
            h, w = divmod(int(code[lo]), 8)
            for dy in range(h):
                for dx in range(w):
                    targets.append(base[lo:hi] + (dy * cw + dx))
                    keys.append(key[lo:hi])
        big = np.iinfo(np.uint32).max
        buf = np.full(ch * cw, big, np.uint32)
        if targets:
            np.minimum.at(buf, np.concatenate(targets), np.concatenate(keys))
        hole = buf == big
        out_ir = None
        if values is not None:
            out_ir = (buf & 0xFFFF).astype(values.dtype).reshape(ch, cw)
            out_ir[hole.reshape(ch, cw)] = 0
            buf >>= 16
        zbuf = buf.astype(np.uint16)
        zbuf[hole] = 0
        return zbuf.reshape(ch, cw), out_ir

    def _ir_lookup(self, ir: np.ndarray, idx: np.ndarray, raw: np.ndarray, depth_scale: float) -> np.ndarray:
        """IR value at each depth pixel's 3D point, for an IR imager that is not the depth imager."""
        pts = self.rays[idx] * (raw.astype(np.float32) * np.float32(depth_scale))[:, None]
        pts = self.depth_to_ir.apply(self.ext.apply(pts.astype(np.float64)))
        u, v = _project(self.ir, pts)
        ui, vi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
        ok = (ui >= 0) & (vi >= 0) & (ui < ir.shape[1]) & (vi < ir.shape[0]) & (pts[:, 2] > 0)
        out = np.zeros(idx.shape[0], ir.dtype)
        out[ok] = ir[vi[ok], ui[ok]]
        return out


@functools.lru_cache(maxsize=8)
def _cached(depth_key, color_key, ext_key, ir_key, ir_ext_key) -> Registrar:
    def intr(k):
        return None if k is None else Intrinsics(*k[:6], model=k[6], coeffs=k[7])

    def ext(k):
        return None if k is None else Extrinsics(np.array(k[0]).reshape(3, 3), np.array(k[1]))

    return Registrar(intr(depth_key), intr(color_key), ext(ext_key), intr(ir_key), ext(ir_ext_key))


def _ext_key(e: Extrinsics) -> tuple:
    return (tuple(e.R.ravel().tolist()), tuple(e.t.tolist()))


def _fit(intr: Intrinsics | None, shape: tuple[int, ...], name: str) -> Intrinsics:
    """The stream's intrinsics at the image's actual size (same field of view), or a clear error."""
    if intr is None:
        raise CalibrationError(f"register_to_color: the calibration has no {name} intrinsics; "
                               f"load a calibration with a {name} camera (edge-fas calibrate, or the device's)")
    h, w = shape[:2]
    if (w, h) == (intr.width, intr.height):
        return intr
    if abs(w / h - intr.width / intr.height) > 1e-3:
        raise CalibrationError(f"register_to_color: {name} image is {w}x{h} but its calibration is "
                               f"{intr.width}x{intr.height} (another aspect ratio); calibrate at this resolution")
    return intr.scaled(w, h)


def register_to_color(frames: FrameSet, calibration: RigCalibration | None = None,
                      roi: tuple[int, int, int, int] | None = None) -> FrameSet:
    """Return a FrameSet with depth and IR warped into the colour camera's pixels (registered=True).

    roi = (x0, y0, x1, y1) in colour pixels limits the work to that region (the face crop plus a margin,
    for a live pipeline); everything outside it is 0 and meta["registration_roi"] records the region.

    rgb, timestamps, counters, truth and meta are kept; depth keeps its raw units and depth_scale. A frame
    set that is already registered is returned unchanged. Without depth, IR cannot be moved; it is then
    kept only when the IR imager is the colour imager, otherwise dropped with meta["registration"] saying so.
    """
    if frames.registered:
        return frames
    cal = calibration if calibration is not None else frames.calibration
    if cal is None:
        raise CalibrationError("register_to_color: the frame set has no calibration; open the camera through "
                               "edge_fas.drivers.open_camera (it attaches the device calibration) or pass calibration=")
    if frames.rgb is None and cal.color is None:
        raise CalibrationError("register_to_color: no colour image and no colour intrinsics to register into")
    color = _fit(cal.color, frames.rgb.shape if frames.rgb is not None else (cal.color.height, cal.color.width),
                 "color")
    if frames.depth is None:
        meta = dict(frames.meta)
        ir = frames.ir
        if ir is not None:
            meta["registration"] = "ir dropped: no depth to move it into colour pixels"
            ir = None
        return frames.replace(ir=ir, registered=True, meta=meta)
    if frames.depth.ndim != 2 or frames.depth.dtype != np.uint16:
        raise CalibrationError(f"register_to_color: depth must be an H x W uint16 image, got "
                               f"{frames.depth.dtype} {frames.depth.shape}")
    depth_intr = _fit(cal.depth, frames.depth.shape, "depth")
    same = colocated(cal)
    ir_intr = ir_ext = None
    if frames.ir is not None and not same:
        ir_intr, ir_ext = _fit(cal.ir, frames.ir.shape, "ir"), cal.ir_to_color
    reg = _cached(_intr_key(depth_intr), _intr_key(color), _ext_key(cal.depth_to_color),
                  None if ir_intr is None else _intr_key(ir_intr), None if ir_ext is None else _ext_key(ir_ext))
    ir_co = None
    if frames.ir is not None and same:
        if frames.ir.shape[:2] != frames.depth.shape:
            raise CalibrationError(f"register_to_color: IR {frames.ir.shape} and depth {frames.depth.shape} share "
                                   "one imager in the calibration but differ in size; stream them at one resolution")
        ir_co = frames.ir
    depth, ir = reg.warp(frames.depth, cal.depth_scale if frames.depth_scale is None else frames.depth_scale,
                         ir=ir_co, ir_separate=None if same else frames.ir, roi=roi)
    if roi is None:
        return frames.replace(depth=depth, ir=ir, registered=True)
    meta = dict(frames.meta)
    meta["registration_roi"] = tuple(int(v) for v in roi)
    return frames.replace(depth=depth, ir=ir, registered=True, meta=meta)
