"""Registration check a person can run on their rig, and stream timing checks.

`registration_check(frames)` registers depth to colour and compares the outlines of objects in depth (borders
where depth jumps away: a head against the room) with the colour edges there. Two effects move a registered
depth outline off the colour one:
- a registration error moves it by a shift T (pixels), the same for every border, whatever its direction;
- the depth camera's edge handling grows or shrinks every object by a few pixels (stereo matching fattens,
  invalidated edge pixels erode), which moves each border along its own outward normal n by the same e.

So each border pixel's offset to the nearest colour edge of its orientation, measured along its normal, is
fitted as e + T . n (least squares, outliers trimmed), after a coarse search over shifts (up to MAX_SHIFT_PX, and
out to WIDE_SHIFT_PX when the best lies at that edge) and outline offsets (truncated oriented chamfer distance) has
brought the outlines within reach. |T| is the misalignment: ~0 on a well calibrated rig, several pixels with a wrong
baseline or rotation. A shift alone
would read an outline's growth as a shift wherever its borders do not face all ways evenly (a head over
shoulders: mostly up). A depth border is a jump of DEPTH_STEP_M and DEPTH_STEP_REL of the depth (a far wall's
noise is none); a hole next to an object (its shadow) stands for the depth behind it, and borders shorter
than MIN_BORDER_PX (the rims of depth holes, flying pixels in hair) are ignored. `matched_pixels` counts the border pixels the fit explains and `matched` is their share; a view
whose outlines do not show in colour (a dark object on a dark wall), or whose depth noise makes most of its
borders, explains few and is not `measurable`. The overlay shows colour edges green,
depth edges red. `stream_skew_ms(frames)` is the spread of the streams' timestamps in one frame set;
`check_skew` flags a set whose spread exceeds a bound (decision.max_skew_ms in the config).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_fas.calibration.registration import register_to_color
from edge_fas.calibration.rig import RigCalibration
from edge_fas.errors import CalibrationError

__all__ = ["RegistrationCheck", "registration_check", "measure_registration", "read_at_reference_width", "limit_px",
           "REFERENCE_WIDTH_PX", "steady_frames", "stream_skew_ms", "check_skew"]

DEPTH_STEP_M = 0.05  # a depth jump larger than this between neighbours is an object border
DEPTH_STEP_REL = 0.1  # ... and larger than this fraction of the near side's depth
MAX_SHIFT_PX = 16
SHADOW_REACH_PX = 30  # how far a hole looks for the depths on either side of it
MIN_BORDER_PX = 30  # a depth border shorter than this is speckle, a hole's rim or a flying pixel, not an outline
MATCH_PX = 4.0  # how far along its normal a border looks for its colour edge (after the coarse fit)
COARSE_STEP_PX = 2  # grid of the coarse search over shifts and outline offsets
GROWTH_RANGE_PX = (-16, 8)  # colour edges from 16 px inside a depth outline (a fattening camera) to 8 px outside
FIT_RESIDUAL_PX = 1.5  # a border pixel the fit misses by more than this is an outlier (and not `matched`)
ORIENTATION_BINS = 8  # edge orientations (mod 180 degrees) in bins of 22.5: a border matches its own and neighbours'
# a view shows a usable outline when the fit explains this many border pixels and this share of them: fewer, or
# a border set made mostly of depth noise that matches colour edges by chance (chosen on rig seeds 0-3 of five
# domains, then 8-9; benchmarks/bench_registration_check.py)
MIN_MATCHED_PX = 200
MIN_MATCHED_SHARE = 0.1
# When the search's best shift lies at its edge, the check searches again out to WIDE_SHIFT_PX, on a grid of
# WIDE_STEP_PX refined on COARSE_STEP_PX: a camera knocked hard, or another model's calibration, puts the outlines
# 20-60 px apart, and within MAX_SHIFT_PX their readings fell apart (too few outline pixels explained: no reading at
# all). Only such views pay for the wider search; every other reading stays what it was.
WIDE_SHIFT_PX = 48
WIDE_STEP_PX = 4
# Every pixel figure above (search reach, outline floors, the limits: calibration.max_reprojection_px and
# monitor_limit_px) was chosen on colour this wide; a wider stream is read on a view this wide
# (read_at_reference_width). Read natively at 1280x720 the same misregistration reads twice the pixels, the search
# reaches half as far and right calibrations failed a 2 px limit more often (docs/deployment.md).
REFERENCE_WIDTH_PX = 640


def _crop_pad(reach: int) -> int:
    """What a box's check reads around the box: a hole's reach, the search's shift and growth, the match distance."""
    return SHADOW_REACH_PX + reach - GROWTH_RANGE_PX[0] + int(MATCH_PX)


CROP_PAD_PX = _crop_pad(MAX_SHIFT_PX)


@dataclass
class RegistrationCheck:
    misalignment_px: float  # |T|: the length of the shift that moves the depth outlines onto the colour edges
    shift_px: tuple[float, float]  # T = (dx, dy): where the depth would have to move
    edge_distance_px: float  # median distance of depth-border pixels to the nearest colour edge, unshifted
    edge_pixels: int
    overlay: np.ndarray | None  # H x W x 3 RGB (None when not asked for)
    matched: float = 1.0  # share of border pixels within FIT_RESIDUAL_PX of the fit
    growth_px: float = 0.0  # how far the depth camera moves every outline outwards (negative: objects shrink)
    matched_pixels: int = 0  # border pixels within FIT_RESIDUAL_PX of the fit
    # the search ended at the edge of its reach (WIDE_SHIFT_PX): the outlines may lie farther apart than the check
    # can read (a camera knocked hard, another model's calibration), and the shift is then a lower bound
    at_search_edge: bool = False

    @property
    def measurable(self) -> bool:
        """Whether the view had outlines that show in both depth and colour (else the shift means little)."""
        return self.explains(MIN_MATCHED_SHARE)

    def explains(self, share: float) -> bool:
        """Whether the fit explains MIN_MATCHED_PX outline pixels and `share` of them (`measurable` asks
        MIN_MATCHED_SHARE of one view; the running check, which pools many views, asks less)."""
        return self.matched_pixels >= MIN_MATCHED_PX and self.matched >= share


def _behind_holes(depth_m: np.ndarray) -> np.ndarray:
    """Per pixel, the depth a hole there stands for: where the valid depths within SHADOW_REACH_PX span a depth
    step, the farthest of them (the hole is the shadow an object casts on what is behind it), else far (out of
    the camera's range behind the one surface around it)."""
    window = np.ones((2 * SHADOW_REACH_PX + 1, 2 * SHADOW_REACH_PX + 1), np.uint8)
    valid = depth_m > 0
    far = cv2.dilate(np.where(valid, depth_m, 0.0).astype(np.float32), window)
    near = cv2.erode(np.where(valid, depth_m, np.inf).astype(np.float32), window)
    spans = np.isfinite(near) & (far - near > np.maximum(DEPTH_STEP_M, DEPTH_STEP_REL * near))
    return np.where(spans, far, np.float32(100.0)).astype(np.float32)


def _depth_edges(depth_m: np.ndarray) -> np.ndarray:
    """Valid pixels on the near side of an object's outline: a neighbour farther by more than the step, holes
    wider than a few pixels standing for the depth behind them (`_behind_holes`: so the object's side of a
    shadow is a border and the background's side is not); isolated dropouts do not count, nor do borders
    shorter than MIN_BORDER_PX."""
    valid = depth_m > 0
    holes = cv2.morphologyEx((~valid).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    far = np.where(valid, depth_m, np.where(holes, _behind_holes(depth_m), 0.0)).astype(np.float32)
    neighbour_max = cv2.dilate(far, np.ones((3, 3), np.uint8))  # a lone dropout (0) neither makes nor hides a border
    # relative as well: a far wall's depth noise (it grows with the square of the distance) is no border
    step = np.maximum(DEPTH_STEP_M, DEPTH_STEP_REL * depth_m)
    # ... and a pixel with a much nearer neighbour is not the near side: a flying pixel, part way between an
    # object's edge and the background (they fatten outlines on the side the camera saw the background from)
    neighbour_min = cv2.erode(np.where(valid, depth_m, np.float32(np.inf)).astype(np.float32), np.ones((3, 3), np.uint8))
    border = (valid & (neighbour_max - depth_m > step) & (depth_m - neighbour_min <= step)).astype(np.uint8)
    # outlines as chains that may skip a pixel (a flying pixel's smaller steps break them), kept by their length
    n, labels = cv2.connectedComponents(cv2.dilate(border, np.ones((3, 3), np.uint8)), connectivity=8)
    length = np.bincount(labels[border > 0], minlength=n)
    long_enough = length >= MIN_BORDER_PX
    long_enough[0] = False
    return long_enough[labels] & (border > 0)


def _gradient(image: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
    return cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)


def _orientation_bin(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Gradient orientation (mod 180 degrees) as a bin in [0, ORIENTATION_BINS)."""
    angle = np.arctan2(gy, gx) % np.pi
    return np.minimum((angle / np.pi * ORIENTATION_BINS).astype(np.int32), ORIENTATION_BINS - 1)


def _grid(lo: int, hi: int, step: int) -> np.ndarray:
    return np.arange(lo, hi + 1, step)


def _coarse_fit(like_dist: np.ndarray, bins, ys, xs, nx, ny, steps=None, growths=None) -> tuple[int, int, int]:
    """The shift (dx, dy) and the outline offset e (by default within MAX_SHIFT_PX and GROWTH_RANGE_PX, both on a
    grid of COARSE_STEP_PX; else `steps` as (x steps, y steps) and `growths`) that put the border pixels nearest
    colour edges of their orientation: the lowest mean of the truncated distance at p + (dx, dy) + e n. Ties go to
    the smaller shift."""
    h, w = like_dist.shape[1:]
    flat = like_dist.reshape(-1)
    xsteps, ysteps = steps if steps is not None else (_grid(-MAX_SHIFT_PX, MAX_SHIFT_PX, COARSE_STEP_PX),) * 2
    growths = _grid(*GROWTH_RANGE_PX, COARSE_STEP_PX) if growths is None else growths
    plane = bins.astype(np.int64) * (h * w)
    cost = np.empty((growths.size, ysteps.size, xsteps.size))
    for i, e in enumerate(growths):  # every dx at once: one lookup of all border pixels per (e, dy)
        ex, ey = xs + e * nx, ys + e * ny
        cols = np.clip(np.rint(ex[None, :] + xsteps[:, None]).astype(np.int64), 0, w - 1)
        for j, dy in enumerate(ysteps):
            row = np.clip(np.rint(ey + dy).astype(np.int64), 0, h - 1) * w
            cost[i, j] = flat[plane + row + cols].mean(axis=1)
    best, found = np.inf, (0, 0, 0)
    for (i, j, k), c in np.ndenumerate(cost):  # in search order: the first of equal costs with the smallest shift
        dx, dy = int(xsteps[k]), int(ysteps[j])
        if c < best - 1e-6 or (abs(c - best) <= 1e-6 and abs(dx) + abs(dy) < abs(found[0]) + abs(found[1])):
            best, found = c, (dx, dy, int(growths[i]))
    return found


def _wide_fit(like_dist: np.ndarray, bins, ys, xs, nx, ny) -> tuple[int, int, int]:
    """_coarse_fit out to WIDE_SHIFT_PX on a grid of WIDE_STEP_PX, then on COARSE_STEP_PX around what it found."""
    wide = _grid(-WIDE_SHIFT_PX, WIDE_SHIFT_PX, WIDE_STEP_PX)
    cx, cy, ce = _coarse_fit(like_dist, bins, ys, xs, nx, ny, (wide, wide), _grid(*GROWTH_RANGE_PX, WIDE_STEP_PX))
    near = _grid(-WIDE_STEP_PX, WIDE_STEP_PX, COARSE_STEP_PX)
    growths = np.unique(np.clip(ce + near, *GROWTH_RANGE_PX))
    return _coarse_fit(like_dist, bins, ys, xs, nx, ny, (cx + near, cy + near), growths)


def _normal_offsets(like_edges: np.ndarray, bins: np.ndarray, ys, xs, nx, ny) -> np.ndarray:
    """Per border pixel, the signed distance along its outward normal (nx, ny) to the nearest colour edge of its
    orientation within MATCH_PX (NaN where there is none)."""
    h, w = like_edges.shape[1:]
    out = np.full(ys.size, np.nan, np.float32)
    steps = np.arange(0.0, MATCH_PX + 0.25, 0.5)
    for step in steps:  # nearest first: a pixel keeps the first edge it meets, inwards or outwards
        for s in ((step,) if step == 0 else (step, -step)):
            u = np.clip(np.rint(xs + s * nx).astype(np.int64), 0, w - 1)
            v = np.clip(np.rint(ys + s * ny).astype(np.int64), 0, h - 1)
            hit = np.isnan(out) & like_edges[bins, v, u]
            out[hit] = s
    return out


def _fit_shift_and_growth(offsets: np.ndarray, nx: np.ndarray, ny: np.ndarray):
    """Least squares offset = e + T . n over the matched pixels, refitted twice without the pixels it misses by more
    than FIT_RESIDUAL_PX: ((Tx, Ty), e, inlier mask over all pixels). None when the normals do not face enough
    directions to tell a shift from a growth."""
    ok = np.isfinite(offsets)
    a = np.stack([np.ones_like(nx), nx, ny], 1).astype(np.float64)
    inliers = ok.copy()
    coef = None
    for _ in range(3):
        if inliers.sum() < 10 or np.linalg.eigvalsh(a[inliers].T @ a[inliers] / inliers.sum())[0] < 0.02:
            return None
        coef = np.linalg.lstsq(a[inliers], offsets[inliers].astype(np.float64), rcond=None)[0]
        inliers = ok & (np.abs(np.where(ok, offsets, 0.0) - a @ coef) <= FIT_RESIDUAL_PX)
    return (float(coef[1]), float(coef[2])), float(coef[0]), inliers


def registration_check(frames, calibration: RigCalibration | None = None, box=None) -> RegistrationCheck:
    """Registration misalignment between colour and registered depth (see the module docstring), optionally only
    from the depth outlines inside box = x0, y0, x1, y1; a stream wider than REFERENCE_WIDTH_PX is read on a view
    that wide, its figures given back in the stream's pixels (`limit_px` scales a limit to them)."""
    if frames.rgb is None or frames.depth is None:
        raise CalibrationError("registration check needs colour and depth in the same frame set")
    return read_at_reference_width(measure_registration, register_to_color(frames, calibration), box, overlay=True)


def limit_px(limit: float, width: int) -> float:
    """A limit in pixels of a REFERENCE_WIDTH_PX-wide image, in pixels of a stream `width` wide (no narrower than
    the reference: a narrower stream is read natively, at its own pixels)."""
    return limit * max(int(width), REFERENCE_WIDTH_PX) / REFERENCE_WIDTH_PX


def read_at_reference_width(measure, reg, box=None, overlay: bool = False) -> RegistrationCheck:
    """measure(reg, box, overlay) on a REFERENCE_WIDTH_PX-wide view of a wider stream (colour averaged, depth by
    nearest pixel: no depth is made up between a face and the room), its shift given back in the stream's pixels
    (and its overlay at the stream's size). The check's search, outline floors and limits were chosen at that width.
    A stream that wide or narrower is read as is."""
    width = reg.rgb.shape[1] if reg.rgb is not None else None
    if width is None or width <= REFERENCE_WIDTH_PX or reg.depth is None:
        return measure(reg, box, overlay=overlay)
    s = REFERENCE_WIDTH_PX / width
    h = max(1, round(reg.rgb.shape[0] * s))
    size = (REFERENCE_WIDTH_PX, h)
    meta = dict(reg.meta)
    roi = meta.get("registration_roi")
    if roi is not None:
        meta["registration_roi"] = (int(np.floor(roi[0] * s)), int(np.floor(roi[1] * s)), int(np.ceil(roi[2] * s)),
                                    int(np.ceil(roi[3] * s)))
    small = reg.replace(rgb=cv2.resize(reg.rgb, size, interpolation=cv2.INTER_AREA),
                        depth=cv2.resize(reg.depth, size, interpolation=cv2.INTER_NEAREST), ir=None, meta=meta)
    r = measure(small, None if box is None else tuple(float(v) * s for v in box), overlay=overlay)
    picture = None if r.overlay is None else cv2.resize(r.overlay, (reg.rgb.shape[1], reg.rgb.shape[0]),
                                                         interpolation=cv2.INTER_NEAREST)
    return replace(r, misalignment_px=r.misalignment_px / s, edge_distance_px=r.edge_distance_px / s,
                   growth_px=r.growth_px / s, shift_px=(round(r.shift_px[0] / s, 2), round(r.shift_px[1] / s, 2)),
                   overlay=picture)


def _crop_window(shape, box, roi, pad: int = CROP_PAD_PX) -> tuple[int, int, int, int]:
    """The part of the image a box's check reads: the box with `pad` around it, within the image and within
    the registered region `roi` (outside it depth is 0 by construction, not a hole in the scene)."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    rx0, ry0, rx1, ry1 = roi if roi is not None else (0, 0, w, h)
    return (int(max(0, rx0, np.floor(x0) - pad)), int(max(0, ry0, np.floor(y0) - pad)),
            int(min(w, rx1, np.ceil(x1) + pad)), int(min(h, ry1, np.ceil(y1) + pad)))


def measure_registration(reg, box=None, overlay: bool = True, wide: bool = False) -> RegistrationCheck:
    """`registration_check` on frames already registered to colour (the live pipeline's, whose depth may cover
    only a region around the face: meta["registration_roi"]). With a box only that part of the image (and
    what the search can reach around it) is read, so a face's check costs a fraction of a whole frame's; the shift
    is the same. overlay=False leaves `overlay` None. A best shift at the edge of MAX_SHIFT_PX is searched again
    out to WIDE_SHIFT_PX (`wide`: that search)."""
    if reg.rgb is None or reg.depth is None:
        raise CalibrationError("registration check needs colour and depth in the same frame set")
    if not reg.registered:
        raise CalibrationError("measure_registration needs registered frames; registration_check registers them")
    rgb, depth = reg.rgb, reg.depth
    ox = oy = 0
    inside = None
    if box is not None:
        ox, oy, x1, y1 = _crop_window(depth.shape, box, reg.meta.get("registration_roi"),
                                      _crop_pad(WIDE_SHIFT_PX if wide else MAX_SHIFT_PX))
        if x1 - ox < 8 or y1 - oy < 8:
            raise CalibrationError("registration check: the box lies outside the registered image")
        rgb, depth = rgb[oy:y1, ox:x1], depth[oy:y1, ox:x1]
        bx0, by0, bx1, by1 = (int(v) for v in box)
        inside = np.zeros(depth.shape, bool)
        inside[max(0, by0 - oy):max(0, by1 - oy), max(0, bx0 - ox):max(0, bx1 - ox)] = True
    depth_m = reg.replace(depth=depth).depth_m()  # metres of the part read only
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    color_edges = cv2.Canny(cv2.GaussianBlur(gray, (5, 5), 1.2), 40, 100) > 0
    depth_edges = _depth_edges(depth_m)
    if inside is not None:
        depth_edges &= inside
    if not depth_edges.any() or not color_edges.any():
        raise CalibrationError("registration check: no depth border or no colour edge in view; put an object "
                               "(a face, a box) in front of a background at least 10 cm behind it")
    h, w = gray.shape
    color_bins = _orientation_bin(*_gradient(gray, 1.2))
    # outward normals: depth grows away from an object (holes read far)
    gx, gy = _gradient(np.where(depth_m > 0, np.minimum(depth_m, 20.0), np.float32(20.0)), 1.5)
    ys, xs = np.nonzero(depth_edges)
    norm = np.hypot(gx[ys, xs], gy[ys, xs]) + 1e-12
    nx, ny = gx[ys, xs] / norm, gy[ys, xs] / norm
    bins = _orientation_bin(nx, ny)
    # per orientation bin, the colour edges of that orientation or a neighbouring one
    offset = (np.arange(ORIENTATION_BINS)[:, None] - np.arange(ORIENTATION_BINS)[None, :]) % ORIENTATION_BINS
    alike = (offset <= 1) | (offset == ORIENTATION_BINS - 1)  # alike[b, c]: orientation bins b and c are neighbours
    like_edges = np.stack([color_edges & alike[b][color_bins] for b in range(ORIENTATION_BINS)])
    like_dist = np.stack([np.minimum(cv2.distanceTransform((~e).astype(np.uint8), cv2.DIST_L2, 5), MATCH_PX)
                          if e.any() else np.full((h, w), MATCH_PX, np.float32) for e in like_edges])
    if wide:
        cx, cy, ce = _wide_fit(like_dist, bins, ys, xs, nx, ny)
    else:
        cx, cy, ce = _coarse_fit(like_dist, bins, ys, xs, nx, ny)
        if max(abs(cx), abs(cy)) >= MAX_SHIFT_PX:  # the outlines may lie farther apart than this search reaches
            return measure_registration(reg, box, overlay, wide=True)
    offsets = _normal_offsets(like_edges, bins, ys + cy + ce * ny, xs + cx + ce * nx, nx, ny)
    fit = _fit_shift_and_growth(offsets, nx, ny)
    if fit is None:  # a straight outline: only the shift across it is known, and that only with the growth in it
        shift, growth, matched, matched_pixels = (float(cx), float(cy)), float(-ce), 0.0, 0
    else:
        (tx, ty), e, inliers = fit
        # the colour edge lies at e + ce outwards of a depth border: the depth outline grew by -(e + ce)
        shift, growth, matched = (cx + tx, cy + ty), -(e + ce), float(inliers.mean())
        matched_pixels = int(inliers.sum())
    unshifted = cv2.distanceTransform((~color_edges).astype(np.uint8), cv2.DIST_L2, 5)
    picture = None
    if overlay:
        picture = (reg.rgb.astype(np.float32) * 0.6).astype(np.uint8)
        view = picture[oy:oy + h, ox:ox + w]
        view[color_edges] = (0, 255, 0)
        view[depth_edges] = (255, 0, 0)
    return RegistrationCheck(float(np.hypot(*shift)), (round(shift[0], 2), round(shift[1], 2)),
                             float(np.median(unshifted[depth_edges])), int(depth_edges.sum()), picture, matched, growth,
                             matched_pixels, max(abs(cx), abs(cy)) >= (WIDE_SHIFT_PX if wide else MAX_SHIFT_PX))


def steady_frames(frame_sets: list):
    """One frame set from several of a still scene: each depth pixel the median of its valid readings (0 where
    fewer than half the frames had one), colour and IR of the middle frame. Stereo depth noise is mostly new in
    every frame; the outlines of a scene that does not move are not, so the median keeps them and drops most of
    the noise's false borders."""
    if not frame_sets:
        raise CalibrationError("registration check: no frames to combine")
    middle = frame_sets[len(frame_sets) // 2]
    if middle.depth is None or any(f.depth is None or f.depth.shape != middle.depth.shape for f in frame_sets):
        return middle
    stack = np.stack([f.depth for f in frame_sets]).astype(np.float32)
    stack[stack == 0] = np.nan
    enough = np.isfinite(stack).sum(0) * 2 >= len(frame_sets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels never valid: handled by `enough`
        median = np.nanmedian(stack, axis=0)
    depth = np.where(enough, np.nan_to_num(median), 0).round().astype(middle.depth.dtype)
    return middle.replace(depth=depth)


def stream_skew_ms(frames) -> float:
    """Largest minus smallest stream timestamp of one frame set (0 with fewer than two streams)."""
    stamps = [float(v) for v in frames.timestamps.values()]
    return max(stamps) - min(stamps) if len(stamps) > 1 else 0.0


def check_skew(frames, max_skew_ms: float) -> tuple[bool, float]:
    """(within bound, skew ms); a set with skew above max_skew_ms should not be judged as one instant."""
    skew = stream_skew_ms(frames)
    return skew <= max_skew_ms, skew
