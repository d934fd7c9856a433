"""Registration of depth and IR into the colour camera: `register_to_color(frames) -> FrameSet`.

A z-buffer forward warp with the same geometry as librealsense's rs.align (depth to colour): every depth
pixel is a small square whose top-left and bottom-right corners are deprojected at its depth, moved into the
colour camera and projected; the colour pixels of that rectangle receive the depth value, and where several
depth pixels land on one colour pixel the nearest surface wins. Depth pixels whose rectangle leaves the
colour image are dropped, colour pixels nothing lands on stay 0 (holes are not filled: a hole means "no
measurement", never a guess). Values are the depth camera's own raw z, as rs.align gives (not z in the
colour camera; they differ by under a millimetre for a rig turned by tenths of a degree). Like rs.align, the
corner splat covers at least 2 x 2 colour pixels, so near surfaces grow by about a pixel into the
background. IR follows the same geometry: when the IR imager is the depth imager (same intrinsics, same
transform, as on a D4xx or an OpenNI sensor) each depth pixel carries its own IR value; otherwise the IR
value is looked up where the depth pixel's 3D point projects into the IR camera.

How a frame stays cheap (a few dense passes over the pixels; no per-pixel Python, no cv2.projectPoints):
- per calibration (cached): the rotated rays of every depth pixel's two corners, folded with the colour
  camera's pinhole into per-pixel coefficients, so a corner's colour pixel is (a z + b) / (c z + d); and the
  block of depth pixels that can land in the colour image (or in a region of it) at any depth from NEAR_M on;
- a distorted colour camera projects through calibration.projection.Projector: exact closed forms for
  Brown-Conrady (OpenCV's 5 coefficients) and Kannala-Brandt, a precomputed table for the other models;
- the splat scatters each depth pixel's key (depth << 16 | IR, so the nearest surface carries its IR)
  once per column of its rectangle into a plane per rectangle height (one np.minimum.at per column), then
  grows the planes downward with dense row minima, tallest first, merging them into one z-buffer;
- work arrays are kept per thread and reused: fresh full-frame temporaries cost page faults every frame.

roi=(x0, y0, x1, y1) limits the output to a colour-pixel region (a live pipeline's face crop) and the work to
the depth pixels that can reach it. device="cuda" runs the same warp with torch on the GPU
(calibration.registration_torch).
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

import numpy as np

from edge_fas.calibration.projection import Projector, distorted, pinhole_box, rays
from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration
from edge_fas.errors import CalibrationError

if TYPE_CHECKING:  # edge_fas.types imports this package (calibration.rig); no import at run time
    from edge_fas.types import FrameSet

__all__ = ["register_to_color", "Registrar", "colocated"]

MAX_SPLAT = 4  # widest rectangle (pixels) one depth pixel may cover; larger means a bad calibration
NEAR_M = 0.1  # nearest depth considered when precomputing which depth pixels can reach the colour image
NEAR_PLANE_M = 1e-3  # points closer to the colour camera's plane (or behind it) are pushed far out of the image
LIMIT_PX = 1e6  # distorted pixel coordinates are clipped to this before the integer conversion
LATTICE_PX = 8  # spacing of the deprojected colour-pixel lattice that bounds a roi in pinhole pixels
EMPTY = np.uint32(0xFFFFFFFF)  # z-buffer value of a colour pixel nothing landed on


def _intr_key(i: Intrinsics) -> tuple:
    return (i.width, i.height, i.fx, i.fy, i.cx, i.cy, i.model, i.coeffs)


def colocated(cal: RigCalibration) -> bool:
    """True when the IR imager is the depth imager (IR pixels are depth pixels)."""
    if cal.ir is None or cal.depth is None:
        return cal.ir is None
    return (_intr_key(cal.ir) == _intr_key(cal.depth)
            and np.allclose(cal.ir_to_color.R, cal.depth_to_color.R, atol=1e-9)
            and np.allclose(cal.ir_to_color.t, cal.depth_to_color.t, atol=1e-9))


def clip_roi(roi, cw: int, ch: int) -> tuple[int, int, int, int]:
    """roi (x0, y0, x1, y1) clipped to a cw x ch image; the whole image when roi is None."""
    if roi is None:
        return 0, 0, cw, ch
    return max(0, int(roi[0])), max(0, int(roi[1])), min(cw, int(roi[2])), min(ch, int(roi[3]))


def _corner_rays(depth: Intrinsics, R: np.ndarray) -> list[np.ndarray]:
    """x, y, z of the depth camera's rays through its pixel corners, rotated by R: three (h+1) x (w+1) arrays."""
    gx, gy = np.arange(depth.width + 1) - 0.5, np.arange(depth.height + 1) - 0.5
    if distorted(depth):
        r = rays(depth, *np.meshgrid(gx, gy))
        return [(r @ R[k]).reshape(gy.size, gx.size) for k in range(3)]
    x, y = (gx - depth.cx) / depth.fx, (gy - depth.cy) / depth.fy  # a pinhole's rays are separable
    return [R[k, 0] * x[None, :] + R[k, 1] * y[:, None] + R[k, 2] for k in range(3)]


class _Scratch:
    """One thread's work arrays for one Registrar, reused frame after frame."""

    def __init__(self, n: int, n_out: int):
        self.f32 = np.empty((4 + Projector.SCRATCH, n), np.float32)  # z, w, u, v, projector scratch
        self.i32 = np.empty((5, n), np.int32)  # u0, v0, u1, v1, start
        self.keep, self.flag = np.empty(n, bool), np.empty(n, bool)
        self.depth, self.key = np.empty(n, np.uint16), np.empty(n, np.uint32)
        self.start, self.cols, self.target = (np.empty(n, np.intp) for _ in range(3))
        self.planes = np.empty(0, np.uint32)  # grown to what the rectangles need (one plane per height)
        self.hole = np.empty(n_out, bool)
        self.n_out, self.masks = n_out, {}

    def mask(self, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
        """An output-sized scratch array of `dtype`."""
        if dtype not in self.masks:
            self.masks[dtype] = np.empty(self.n_out, dtype)
        return self.masks[dtype][:shape[0] * shape[1]].reshape(shape)

    def grid(self, name: str, shape: tuple[int, int], k: int = 0) -> np.ndarray:
        """Scratch array `name` (row k of a stacked one) viewed as a block-shaped 2-D array."""
        a = getattr(self, name)
        return (a[k] if a.ndim == 2 else a)[:shape[0] * shape[1]].reshape(shape)


class Registrar:
    """Precomputed depth-to-colour warp for one calibration (see the module docstring)."""

    def __init__(self, depth: Intrinsics, color: Intrinsics, depth_to_color: Extrinsics,
                 ir: Intrinsics | None = None, ir_to_color: Extrinsics | None = None):
        self.depth, self.color, self.ext = depth, color, depth_to_color
        self.project = Projector(color)
        self.pinhole = self.project.kind == "pinhole"
        h, w = depth.height, depth.width
        R, t = depth_to_color.R, depth_to_color.t
        # rotated rays of the pixel-corner grid: corner (i, j) sits at pixel coordinates (j - 0.5, i - 0.5), so
        # a pixel's top-left corner is grid[i, j] and its bottom-right corner grid[i + 1, j + 1]
        grid = _corner_rays(depth, R)
        self._reach(grid, color, t)
        self.coef = []
        if self.block is not None:
            rows, cols = self.block
            # a corner's colour point is z r + t: its pinhole pixel (+ 0.5) is (a_u z + b_u) / w with
            # w = c z + d its distance from the colour camera's plane, a multiply-add per term and frame
            if self.pinhole:
                fu, fv = np.array([color.fx, 0, color.cx + 0.5]), np.array([0, color.fy, color.cy + 0.5])
            else:  # the Projector takes normalised coordinates x / z, y / z: the same form without K
                fu, fv = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
            for dy, dx in ((0, 0), (1, 1)):
                rx, ry, rz = (g[rows.start + dy:rows.stop + dy, cols.start + dx:cols.stop + dx] for g in grid)
                self.coef.append(tuple((f[0] * rx + f[1] * ry + f[2] * rz).astype(np.float32) for f in (fu, fv))
                                 + (rz.astype(np.float32),))
        self.const = tuple(float(np.float32(v)) for v in (fu @ t, fv @ t, t[2])) if self.coef else (0.0,) * 3
        self.amax = max((float(np.abs(c[i]).max()) for c in self.coef for i in (0, 1)), default=0.0)
        self.ir = ir
        self.ir_project = self.ir_coef = None
        if ir is not None and ir_to_color is not None:  # a separate IR imager, seen from the depth camera
            d2i = ir_to_color.inverse()
            Rq, tq = d2i.R @ R, d2i.R @ t + d2i.t
            ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
            q = (rays(depth, xs, ys) @ Rq.T).reshape(h, w, 3)
            self.ir_coef = tuple(np.ascontiguousarray(q[..., k], np.float32) for k in range(3))
            self.ir_const = tuple(float(np.float32(v)) for v in tq)
            self.ir_project = Projector(ir)
        self._local = threading.local()
        self.lattice = None  # pinhole pixels of a lattice of colour pixels, for roi blocks (made on first use)
        self.on_device: dict = {}  # torch device -> registration_torch.TorchRegistrar, made on first use

    def _reach(self, grid: list[np.ndarray], color: Intrinsics, t: np.ndarray) -> None:
        """Which depth pixels can land where. A pixel's ray, seen from the colour camera, runs from its NEAR_M
        point to its vanishing point: a straight segment in pinhole pixels (x / z * f + c), so the bounding
        box of its ends bounds it. Keeps the block of depth pixels whose segment meets the image, and per
        depth column (row) the pinhole columns (rows) its pixels can reach, to cut a block for a roi.
        Distortion is handled by comparing in pinhole pixels: the image (or roi) is deprojected exactly.
        The pixel's ray is taken as the mean of its corners' (exact without depth distortion, within a
        small fraction of a pixel with it: far inside the margin)."""
        # float32 and in place: a bound with an 8-pixel margin needs no more, and on the first frame fresh
        # memory (page faults) costs more than the arithmetic
        rx, ry, rz = (np.add(g[:-1, :-1], g[1:, 1:], dtype=np.float32) for g in grid)
        ends = []
        for scale, (tx, ty, tz) in ((NEAR_M * 0.5, t), (0.5, (0.0, 0.0, 0.0))):  # 0.5: the mean of two corners
            pz = rz * np.float32(scale)
            pz += np.float32(tz)
            behind = pz <= 1e-9  # an end behind the camera: the segment may reach anywhere
            u, v = rx * np.float32(scale), ry * np.float32(scale)
            for a, shift, f, c in ((u, tx, color.fx, color.cx), (v, ty, color.fy, color.cy)):
                a += np.float32(shift)
                a /= pz
                a *= np.float32(f)
                a += np.float32(c)
                if behind.any():
                    a[behind] = np.nan
            ends.append((u, v))
        (u, v), (uf, vf) = ends
        lo_u, hi_u, lo_v, hi_v = np.minimum(u, uf), np.maximum(u, uf), np.minimum(v, vf), np.maximum(v, vf)
        for lo, hi in ((lo_u, hi_u), (lo_v, hi_v)):  # an end behind (NaN propagates): anywhere
            unknown = np.isnan(lo)
            if unknown.any():
                lo[unknown], hi[unknown] = -np.inf, np.inf
        m = 2 * MAX_SPLAT
        lo_u -= m
        lo_v -= m
        hi_u += m
        hi_v += m
        x0, y0, x1, y1 = pinhole_box(color, 0, 0, color.width, color.height)
        maybe = (lo_u < x1) & (hi_u > x0) & (lo_v < y1) & (hi_v > y0)
        rows, cols = np.flatnonzero(maybe.any(1)), np.flatnonzero(maybe.any(0))
        self.block = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)) \
            if rows.size else None
        self.size = 0 if self.block is None else (rows[-1] + 1 - rows[0]) * (cols[-1] + 1 - cols[0])
        self.col_reach = (np.where(maybe, lo_u, np.inf).min(0), np.where(maybe, hi_u, -np.inf).max(0))
        self.row_reach = (np.where(maybe, lo_v, np.inf).min(1), np.where(maybe, hi_v, -np.inf).max(1))

    def _pinhole_box(self, x0: int, y0: int, x1: int, y1: int) -> tuple[float, float, float, float]:
        """Bounding box in pinhole pixels of colour pixels [x0, x1) x [y0, y1): the region itself for a pinhole,
        else the box of the lattice nodes around it (deprojected once, LATTICE_PX apart: between nodes the
        distortion bends the border by far less than the reach margin)."""
        if self.pinhole:
            return x0, y0, x1, y1
        if self.lattice is None:
            c, s = self.color, LATTICE_PX
            uu, vv = np.meshgrid(np.arange(-s, c.width + 2 * s, s, dtype=np.float64),
                                 np.arange(-s, c.height + 2 * s, s, dtype=np.float64))
            r = rays(c, uu, vv)
            self.lattice = ((r[:, 0] * c.fx + c.cx).reshape(uu.shape), (r[:, 1] * c.fy + c.cy).reshape(uu.shape))
        pu, pv = self.lattice
        s = LATTICE_PX
        cols = slice(max(0, (x0 + s) // s), min(pu.shape[1], -(-(x1 + s) // s) + 1))
        rows = slice(max(0, (y0 + s) // s), min(pu.shape[0], -(-(y1 + s) // s) + 1))
        return pu[rows, cols].min(), pv[rows, cols].min(), pu[rows, cols].max(), pv[rows, cols].max()

    def block_for(self, x0: int, y0: int, x1: int, y1: int) -> tuple[slice, slice] | None:
        """The block of depth pixels that can land in colour pixels [x0, x1) x [y0, y1), or None."""
        if self.block is None or x1 <= x0 or y1 <= y0:
            return None
        if (x0, y0, x1, y1) == (0, 0, self.color.width, self.color.height):
            return self.block
        bx0, by0, bx1, by1 = self._pinhole_box(x0, y0, x1, y1)
        (clo, chi), (rlo, rhi) = self.col_reach, self.row_reach
        cols = np.flatnonzero((clo < bx1) & (chi > bx0))
        rows = np.flatnonzero((rlo < by1) & (rhi > by0))
        if not cols.size or not rows.size:
            return None
        return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)

    def _scratch(self) -> _Scratch:
        s = getattr(self._local, "scratch", None)
        if s is None:
            s = self._local.scratch = _Scratch(self.size, self.color.width * self.color.height)
        return s

    def coordinate_bound(self, depth_scale: float) -> float:
        """Largest |coordinate| a corner can get before distortion (pinhole pixels, or normalised for a
        distorted camera): (|a| z_max + |b|) / 1 mm."""
        return (self.amax * 65535 * depth_scale + max(abs(self.const[0]), abs(self.const[1]))) / NEAR_PLANE_M

    def _corner(self, k: int, z: np.ndarray, inner: tuple[slice, slice], depth_scale: float, keep: np.ndarray,
                s: _Scratch) -> tuple[np.ndarray, np.ndarray]:
        """Colour pixel (integer, as rs.align: C truncation of p + 0.5) of corner k of every block pixel;
        `inner` is the block within self.block. Clears `keep` where the corner is not in front of the camera."""
        shape = z.shape
        a_u, a_v, c = (a[inner] for a in self.coef[k])
        b_u, b_v, d = self.const
        w, u, v = (s.grid("f32", shape, i) for i in (1, 2, 3))
        flag = s.grid("flag", shape)
        np.multiply(c, z, out=w)
        w += d
        np.greater(w, NEAR_PLANE_M, out=flag)  # closer than 1 mm to the colour camera's plane, or behind it:
        keep &= flag  # the pixel does not land
        np.maximum(w, NEAR_PLANE_M, out=w)
        np.multiply(a_u, z, out=u)
        u += b_u
        u /= w
        np.multiply(a_v, z, out=v)
        v += b_v
        v /= w
        bound = self.coordinate_bound(depth_scale)
        if not self.pinhole:
            if self.project.kind == "brown_conrady" and bound > 1e3:
                # keep the polynomial finite (|x| = 1000 is 89.9 deg; real rigs stay far below: no pass)
                np.clip(u, -1e3, 1e3, out=u)
                np.clip(v, -1e3, 1e3, out=v)
            self.project.project_(u, v, 0.5, [s.grid("f32", shape, 4 + i) for i in range(Projector.SCRATCH)])
        if not self.pinhole or bound > 2e9:  # keep the integer conversion defined
            np.clip(u, -LIMIT_PX, LIMIT_PX, out=u)
            np.clip(v, -LIMIT_PX, LIMIT_PX, out=v)
        ui, vi = s.grid("i32", shape, 2 * k), s.grid("i32", shape, 2 * k + 1)
        np.copyto(ui, u, casting="unsafe")  # truncates toward zero, like C
        np.copyto(vi, v, casting="unsafe")
        return ui, vi

    def start_frame(self, roi, ir: np.ndarray | None, ir_separate: np.ndarray | None):
        """What every warp starts with: (the clipped roi, the IR dtype or None, empty depth and IR outputs,
        the block of depth pixels that can land in the roi or None, that block within self.block)."""
        cw, ch = self.color.width, self.color.height
        x0, y0, x1, y1 = clip_roi(roi, cw, ch)
        separate = ir_separate is not None and self.ir_project is not None
        ir_dtype = ir.dtype if ir is not None else ir_separate.dtype if separate else None
        out_depth = np.zeros((ch, cw), np.uint16)
        out_ir = None if ir_dtype is None else np.zeros((ch, cw), ir_dtype)
        block = self.block_for(x0, y0, x1, y1)
        inner = None
        if block is not None:
            r0, c0 = self.block[0].start, self.block[1].start
            inner = (slice(block[0].start - r0, block[0].stop - r0), slice(block[1].start - c0, block[1].stop - c0))
        return (x0, y0, x1, y1), ir_dtype, out_depth, out_ir, block, inner

    def warp(self, depth: np.ndarray, depth_scale: float, ir: np.ndarray | None = None,
             ir_separate: np.ndarray | None = None,
             roi: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Depth (and IR) in colour pixels. `ir` is co-located with depth; `ir_separate` needs its own lookup.
        roi = (x0, y0, x1, y1) in colour pixels: only depth pixels landing wholly inside it are warped."""
        (x0, y0, x1, y1), ir_dtype, out_depth, out_ir, block, inner = self.start_frame(roi, ir, ir_separate)
        if block is None:
            return out_depth, out_ir
        s = self._scratch()
        d = s.grid("depth", depth[block].shape)
        np.copyto(d, depth[block])
        z = s.grid("f32", d.shape, 0)
        np.multiply(d, np.float32(depth_scale), out=z)
        # a depth pixel lands when it has depth, its corners are in front of the colour camera and its
        # rectangle u0..u1 x v0..v1 lies inside the roi
        keep, flag = s.grid("keep", d.shape), s.grid("flag", d.shape)
        np.greater(d, 0, out=keep)
        u0, v0 = self._corner(0, z, inner, depth_scale, keep, s)
        u1, v1 = self._corner(1, z, inner, depth_scale, keep, s)
        for a, op, b in ((u0, np.greater_equal, x0), (v0, np.greater_equal, y0), (u1, np.less, x1),
                         (v1, np.less, y1), (u1, np.greater_equal, u0), (v1, np.greater_equal, v0)):
            op(a, b, out=flag)
            keep &= flag
        # extra columns and rows of each rectangle (0 .. MAX_SPLAT - 1; 0 for a pixel that does not land)
        u1 -= u0
        v1 -= v0
        np.clip(u1, 0, MAX_SPLAT - 1, out=u1)
        np.clip(v1, 0, MAX_SPLAT - 1, out=v1)
        if not keep.any():
            return out_depth, out_ir
        v1 *= keep  # (u1 of a pixel that does not land stays in 0 .. MAX_SPLAT - 1: its empty key writes nothing)
        tall = int(v1.max()) + 1
        # the key is raw depth << 16 | IR, so one minimum keeps the nearest surface and its IR value; a pixel
        # that does not land gets the empty key and writes nothing (every pixel is scattered: one pass over
        # all of them is cheaper than gathering the landing ones)
        key = s.grid("key", d.shape)
        np.copyto(key, d)
        if ir_dtype is not None:
            key <<= 16
            key |= self._ir_lookup(ir_separate, z, block) if ir is None else ir[block]
        empty = s.grid("i32", d.shape, 4).view(np.uint32)  # 0 where the pixel lands, all ones where not
        np.subtract(keep.view(np.uint8), np.uint32(1), out=empty, dtype=np.uint32)
        key |= empty
        # flat index of each rectangle's top-left cell in the plane of its row count
        rw, rh = x1 - x0, y1 - y0
        start = s.grid("i32", d.shape, 4)
        np.multiply(v0, rw, out=start)
        start += u0
        start -= y0 * rw + x0
        v1 *= rw * rh
        start += v1
        start *= keep
        zbuf = _splat(key.reshape(-1), start.reshape(-1), u1.reshape(-1), tall, rw, rh, s)
        hole = s.hole[:rw * rh].reshape(rh, rw)
        np.equal(zbuf, EMPTY, out=hole)
        if ir_dtype is not None:
            _masked_copy(out_ir[y0:y1, x0:x1], zbuf, hole, s)  # the low 16 bits: IR
            zbuf >>= 16
        _masked_copy(out_depth[y0:y1, x0:x1], zbuf, hole, s)
        return out_depth, out_ir

    def _ir_lookup(self, ir: np.ndarray, z: np.ndarray, block: tuple[slice, slice]) -> np.ndarray:
        """IR value at each block pixel's 3D point, for an IR imager that is not the depth imager."""
        qx, qy, qz = (a[block] for a in self.ir_coef)
        tx, ty, tz = self.ir_const
        pz = qz * z + tz
        front = pz > 0
        np.maximum(pz, NEAR_PLANE_M, out=pz)
        u, v = self.ir_project.pixels((qx * z + tx) / pz, (qy * z + ty) / pz)
        np.clip(u, -1.0, ir.shape[1], out=u)  # also keeps the values inside int range
        np.clip(v, -1.0, ir.shape[0], out=v)
        ui, vi = np.rint(u).astype(np.intp), np.rint(v).astype(np.intp)
        ok = front & (ui >= 0) & (vi >= 0) & (ui < ir.shape[1]) & (vi < ir.shape[0])
        out = np.zeros(z.shape, ir.dtype)
        out[ok] = ir[vi[ok], ui[ok]]
        return out


def _masked_copy(part: np.ndarray, zbuf: np.ndarray, hole: np.ndarray, s: _Scratch) -> None:
    """part = the low bits of zbuf, 0 in a hole. A mask and an AND: a boolean-indexed assignment costs ~20x
    more where the holes are scattered, as on noisy real depth."""
    np.copyto(part, zbuf, casting="unsafe")
    mask = s.mask(part.dtype, hole.shape)
    np.subtract(hole.view(np.uint8), 1, out=mask, dtype=part.dtype)  # all ones where something landed
    part &= mask


def _splat(key: np.ndarray, start: np.ndarray, cols: np.ndarray, tall: int, rw: int, rh: int,
           s: _Scratch) -> np.ndarray:
    """Nearest-surface z-buffer of rectangles in an rh x rw image; where rectangles overlap the smallest key
    wins. Source i covers cols[i] + 1 columns and k + 1 rows from flat index start[i] - k * rw * rh: start
    already points into plane k, the plane of its row count (planes 0 .. tall - 1).

    Each key is scattered once per column of its rectangle (a narrower rectangle repeats its last column: a
    repeated minimum changes nothing), then the planes grow downward, tallest first: grow the running buffer
    by a row, merge the next plane, and so on."""
    size = rh * rw
    if s.planes.size < tall * size + MAX_SPLAT:
        s.planes = np.empty(tall * size + MAX_SPLAT, np.uint32)
    planes = s.planes[:tall * size + MAX_SPLAT]
    planes.fill(EMPTY)
    n = start.size
    first, target, width = s.start[:n], s.target[:n], s.cols[:n]
    np.copyto(first, start)  # np.minimum.at takes intp indices fastest
    np.copyto(width, cols)
    for dx in range(int(width.max()) + 1):
        if dx:
            np.minimum(width, dx, out=target)
            target += first
        np.minimum.at(planes, target if dx else first, key)
    zbuf = planes[(tall - 1) * size:tall * size].reshape(rh, rw)
    for k in range(tall - 2, -1, -1):  # plane k becomes min(plane k, zbuf, zbuf one row down): no overlap
        plane = planes[k * size:(k + 1) * size].reshape(rh, rw)
        np.minimum(plane[1:], zbuf[:-1], out=plane[1:])
        np.minimum(plane, zbuf, out=plane)
        zbuf = plane
    return zbuf


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


def _warp_on(reg: Registrar, device: str | None):
    """The warp function for `device` (see register_to_color)."""
    if device is None:
        return reg.warp
    try:
        import torch
    except ImportError as e:
        if device == "auto":
            return reg.warp
        raise CalibrationError(f"register_to_color: device={device!r} needs torch, which does not import here "
                               f"({e}); use device=None for the CPU path") from e
    if device == "auto":
        if not torch.cuda.is_available():
            return reg.warp
        device = "cuda"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise CalibrationError(f"register_to_color: device={device!r} is not a torch device ({e}); "
                               "use None, 'auto', 'cuda', 'cuda:N' or 'cpu'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CalibrationError(f"register_to_color: device={device!r} but this torch ({torch.__version__}) sees "
                               "no CUDA device; use device=None (the CPU path), or install a CUDA build of torch")
    on = reg.on_device.get(str(dev))
    if on is None:
        from edge_fas.calibration.registration_torch import TorchRegistrar
        on = reg.on_device[str(dev)] = TorchRegistrar(reg, dev)
    return on.warp


def register_to_color(frames: FrameSet, calibration: RigCalibration | None = None,
                      roi: tuple[int, int, int, int] | None = None, device: str | None = None) -> FrameSet:
    """Return a FrameSet with depth and IR warped into the colour camera's pixels (registered=True).

    roi = (x0, y0, x1, y1) in colour pixels limits the work to that region (the face crop plus a margin,
    for a live pipeline); everything outside it is 0 and meta["registration_roi"] records the region.
    device: None runs numpy on the CPU; "cuda" (or "cuda:N") runs the same warp with torch on that GPU, and
    "auto" picks CUDA when torch has it, else the CPU path; "cpu" runs the torch code on the CPU (for tests).
    The result is the same numpy FrameSet either way.

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
    if frames.ir is not None and (frames.ir.ndim != 2 or frames.ir.dtype not in (np.uint8, np.uint16)):
        raise CalibrationError(f"register_to_color: IR must be an H x W uint8 or uint16 image, got "
                               f"{frames.ir.dtype} {frames.ir.shape}; convert it (e.g. np.clip(ir, 0, 65535)"
                               ".astype(np.uint16)) before registering")
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
    warp = _warp_on(reg, device)
    depth, ir = warp(frames.depth, cal.depth_scale if frames.depth_scale is None else frames.depth_scale,
                     ir=ir_co, ir_separate=None if same else frames.ir, roi=roi)
    if roi is None:
        return frames.replace(depth=depth, ir=ir, registered=True)
    meta = dict(frames.meta)
    meta["registration_roi"] = tuple(int(v) for v in roi)
    return frames.replace(depth=depth, ir=ir, registered=True, meta=meta)
