"""The one shared preprocessing: face crop, resize and per-modality normalisation.

Dataset transforms, export checks and the live pipeline all call these functions, so training and
inference see identical inputs (DESIGN.md, "Preprocessing is one function"). The parameters travel
in every model artifact's manifest.

- colour: RGB scaled to [0, 1], then (x - mean) / std per channel.
- depth: robust centring on the median of the valid face pixels and scaling by 1.4826 * MAD, with the
  scale floored at `depth_min_scale_mm` so a flat print's sensor noise is not blown up into "relief";
  nearer is positive; clipped to +-`depth_clip`; holes stay 0 and are reported in `depth_valid`.
- IR: per-crop normalisation, (x - mean) / max(std, `ir_min_std`) with x in [0, 1]; the floor keeps a
  dark, flat screen dark instead of stretching its noise.

Three alternatives (chosen per model, recorded in its manifest; the defaults above keep every existing
artifact's behaviour):
- `rgb_norm: face`: each channel's mean over the central face region is subtracted before the division by
  std, so the crop's overall lightness and colour cast are gone (the face centre averages 0 in every
  channel) while its texture and contrast keep their scale. Overall lightness and saturation follow the
  skin tone of the person, the exposure and the white balance, none of which is a property of an attack,
  and in the synthetic rig's training data attacks are lighter and less saturated on average
  (benchmarks/bench_colour_stats.py). Measured once (docs/demo-model.md, "Colour statistics that track skin
  tone"): better on silicone, worse on rigid masks, paper masks and partial attacks on the validation ranges,
  and no change in how often lighter-skinned people are rejected.
- `depth_norm: plane_mm`: the relief above a plane fitted (least squares, one outlier-rejecting refit)
  to the valid central face pixels, in units of `depth_unit_mm` (nearer positive). A print or a screen
  is ~0 however it is tilted; a face keeps its physical relief in millimetres, so its amplitude is a
  cue instead of being scaled away.
- `ir_norm: face_log`: log IR minus the median log IR of the valid central face pixels, in units of
  `ir_log_unit`: a ratio of reflectances, blind to the emitter's power, the distance and the imager's
  gain (all multiplicative), keeping contrast (skin against hair and eyes, paper against ink, the
  emitter's dots and how skin blurs them) at its real scale. IR holes (0) stay 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from edge_fas.errors import CalibrationError, ConfigError
from edge_fas.types import FaceCrop, FrameSet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_NORMS = ("median_mad", "plane_mm")
IR_NORMS = ("crop", "face_log")
RGB_NORMS = ("imagenet", "face")
FRAMINGS = ("detector", "metric", "silhouette")
FRAMING_KEYS = ("framing", "framing_face_m")  # how the face is cut, not how its pixels are normalised
METRIC_FACE_M = 0.150  # metres: the detector's median box width on bona fide faces of the randomised rig (docs/demo-model.md)
MIN_FRAMING_DEPTH_PIXELS = 20
# silhouette framing: the head is the pixels within this depth of the face's distance (front of the face to its sides
# and hair is 40-100 mm; the body and background stand farther), on rows within SILHOUETTE_ROWS sides of the centre
SILHOUETTE_DEPTH_M = 0.08
SILHOUETTE_ROWS = 0.1


@dataclass(frozen=True)
class PreprocessParams:
    size: int = 224  # model input side (pixels)
    crop_scale: float = 1.4  # crop square side relative to the detected face box's longer side
    rgb_mean: tuple[float, float, float] = IMAGENET_MEAN
    rgb_std: tuple[float, float, float] = IMAGENET_STD
    rgb_norm: str = "imagenet"  # or "face" (see the module docstring)
    depth_min_scale_mm: float = 10.0
    depth_clip: float = 4.0
    ir_min_std: float = 0.05
    depth_norm: str = "median_mad"  # or "plane_mm" (see the module docstring)
    depth_unit_mm: float = 20.0  # plane_mm: millimetres per unit
    ir_norm: str = "crop"  # or "face_log"
    ir_log_unit: float = 0.5  # face_log: natural-log units per unit
    framing: str = "detector"  # or "metric", "silhouette" (see framed_box)
    framing_face_m: float = METRIC_FACE_M  # metric, silhouette: the box side in metres at the face's distance

    def __post_init__(self):
        if self.depth_norm not in DEPTH_NORMS:
            raise ConfigError(f"preprocessing: depth_norm {self.depth_norm!r} is unknown; use one of {DEPTH_NORMS}")
        if self.rgb_norm not in RGB_NORMS:
            raise ConfigError(f"preprocessing: rgb_norm {self.rgb_norm!r} is unknown; use one of {RGB_NORMS}")
        if self.ir_norm not in IR_NORMS:
            raise ConfigError(f"preprocessing: ir_norm {self.ir_norm!r} is unknown; use one of {IR_NORMS}")
        if self.depth_unit_mm <= 0 or self.ir_log_unit <= 0:
            raise ConfigError("preprocessing: depth_unit_mm and ir_log_unit must be > 0")
        if self.framing not in FRAMINGS:
            raise ConfigError(f"preprocessing: framing {self.framing!r} is unknown; use one of {FRAMINGS}")
        if not 0.03 <= self.framing_face_m <= 0.5:
            raise ConfigError(f"preprocessing: framing_face_m {self.framing_face_m} is not a face's width in metres; "
                              f"use a value in [0.03, 0.5] (default {METRIC_FACE_M})")

    def to_dict(self) -> dict:
        """Every parameter, but the framing keys only where the framing is not the detector's: the framing came after
        many artifacts and crop caches, whose manifests and cache keys keep their identity this way."""
        d = asdict(self)
        d["rgb_mean"], d["rgb_std"] = list(self.rgb_mean), list(self.rgb_std)
        if self.framing == "detector":
            for k in FRAMING_KEYS:
                d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessParams":
        allowed = {f.name for f in fields(cls)}
        unknown = set(d) - allowed
        if unknown:
            raise ConfigError(f"preprocessing parameters: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
        d = dict(d)
        for k in ("rgb_mean", "rgb_std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)


def framed_box(frames: FrameSet, box, params: PreprocessParams):
    """The box crop_face cuts for the face the detector found at `box` (colour pixels), by params.framing.

    detector: `box` itself. metric: the square on the box's centre whose side is framing_face_m * fx / z, where fx is
    the colour camera's focal length and z the median registered depth (metres) over the box's middle half: the face
    framed by its measured distance rather than by the detector's size estimate, which wanders by about 12% (log
    scale) from the face's true extent (docs/demo-model.md, "Depth-sized framing"). Where that middle half holds
    fewer than MIN_FRAMING_DEPTH_PIXELS depth pixels, or there is no depth stream, the face is framed as the detector
    boxed it.

    silhouette: the metric square moved sideways onto the head as depth outlines it. On each row within SILHOUETTE_ROWS
    sides of the centre, the run of pixels within SILHOUETTE_DEPTH_M of z that holds the centre column, searched no
    farther than the crop square (crop_scale sides); the square's horizontal centre is the median of the runs'
    midpoints. The detector's horizontal centre wanders about 0.06 face widths from the face's true one, the head's
    outline about 0.04 (docs/demo-model.md, "Where the crop's centre comes from"). Its vertical centre stays
    the detector's: the head's outline in depth has no edge there that is steadier (hair above, the neck below). Where
    no row has depth at the centre column, the metric square is kept."""
    if params.framing == "detector":
        return box
    if frames.depth is None:
        return box
    if not frames.registered:
        raise CalibrationError(f"{params.framing} framing reads the face's depth in colour pixels; register depth to "
                               "colour first (edge_fas.calibration.register_to_color)")
    if frames.calibration is None or frames.calibration.color is None:
        raise CalibrationError(f"{params.framing} framing (preprocessing framing: {params.framing}) sizes the face by "
                               "its distance and needs the colour camera's focal length, but these frames carry no "
                               "calibration: give the source its rig calibration, or use a model whose preprocessing "
                               "framing is 'detector'")
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    mid = frames.depth[max(int(y0 + 0.25 * h), 0):max(int(y1 - 0.25 * h), 0),
                       max(int(x0 + 0.25 * w), 0):max(int(x1 - 0.25 * w), 0)]
    z = mid[mid > 0]
    if z.size < MIN_FRAMING_DEPTH_PIXELS:
        return box
    side = params.framing_face_m * float(frames.calibration.color.fx) / (float(np.median(z)) * frames.depth_scale)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    square = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return outline_centred(frames, square, params) if params.framing == "silhouette" else square


def outline_centred(frames: FrameSet, square, params: PreprocessParams):
    """The metric framing's `square` moved sideways onto the head's outline in depth (framed_box, silhouette), for a
    caller that has the square already: the live pipeline registers the frames around it before the outline is read.
    The face's distance is the one the square's side was set from."""
    x0, y0, x1, y1 = square
    side = x1 - x0
    z_m = params.framing_face_m * float(frames.calibration.color.fx) / side
    cx = _silhouette_centre(frames.depth, frames.depth_scale, z_m, (x0 + x1) / 2, (y0 + y1) / 2, side,
                            params.crop_scale)
    return cx - side / 2, y0, cx + side / 2, y1


def _silhouette_centre(depth: np.ndarray, depth_scale: float, z_m: float, cx: float, cy: float, side: float,
                       crop_scale: float) -> float:
    """The horizontal centre of the head's outline in depth near (cx, cy) (framed_box, silhouette); cx where the
    centre column has no depth near z_m on any row searched."""
    h, w = depth.shape[:2]
    half = crop_scale * side / 2
    wx0, wx1 = max(int(cx - half), 0), min(int(cx + half) + 1, w)
    wy0, wy1 = max(int(cy - SILHOUETTE_ROWS * side), 0), min(int(cy + SILHOUETTE_ROWS * side) + 1, h)
    c = int(cx)
    if not (wx0 <= c < wx1 and wy0 < wy1):
        return cx
    pad = 3  # the closing below sees the same neighbours at the window's edge as inside it
    px0, py0, px1, py1 = max(wx0 - pad, 0), max(wy0 - pad, 0), min(wx1 + pad, w), min(wy1 + pad, h)
    patch = depth[py0:py1, px0:px1].astype(np.float32) * depth_scale
    head = ((patch > 0) & (np.abs(patch - z_m) < SILHOUETTE_DEPTH_M)).astype(np.uint8)
    head = cv2.morphologyEx(head, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))  # stereo's small holes
    head = head[wy0 - py0:wy1 - py0, wx0 - px0:wx1 - px0] > 0
    c -= wx0
    mids = []
    for row in head:
        if not row[c]:
            continue
        gaps_left, gaps_right = np.flatnonzero(~row[:c]), np.flatnonzero(~row[c:])
        left = gaps_left[-1] + 1 if gaps_left.size else 0
        right = c + gaps_right[0] - 1 if gaps_right.size else row.size - 1
        mids.append(wx0 + (left + right) / 2)
    return float(np.median(mids)) if mids else cx


def square_box(box, scale: float) -> tuple[float, float, float, float]:
    """The square of side scale * max(w, h) centred on box (x0, y0, x1, y1); may extend past the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = scale * max(x1 - x0, y1 - y0) / 2
    return cx - half, cy - half, cx + half, cy + half


def _warp(img: np.ndarray, box, size: int, interpolation: int) -> np.ndarray:
    """Resample the square `box` of img to size x size; outside the image is 0."""
    x0, y0, x1, y1 = box
    s = size / (x1 - x0)
    # pixel centres: dst (u + 0.5) = s * (src (x + 0.5) - x0)
    m = np.array([[s, 0, -s * x0 + 0.5 * s - 0.5], [0, s, -s * y0 + 0.5 * s - 0.5]], dtype=np.float64)
    return cv2.warpAffine(img, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_face(frames: FrameSet, box, params: PreprocessParams) -> FaceCrop:
    """Crop the face square around `box` (colour pixels) from all modalities and normalise them."""
    if (frames.depth is not None or frames.ir is not None) and not frames.registered and frames.rgb is not None:
        raise CalibrationError("crop_face needs depth and IR registered to colour; call "
                               "edge_fas.calibration.register_to_color(frames) first")
    sq = square_box(box, params.crop_scale)
    n = params.size
    rgb = _warp(frames.rgb, sq, n, cv2.INTER_AREA if (sq[2] - sq[0]) > n else cv2.INTER_LINEAR) \
        if frames.rgb is not None else None
    depth_mm = None
    if frames.depth is not None:
        d = _warp(frames.depth, sq, n, cv2.INTER_NEAREST)  # nearest: never blend face and background depth
        depth_mm = d.astype(np.float32) * np.float32(frames.depth_scale * 1000.0)
    ir = _warp(frames.ir, sq, n, cv2.INTER_LINEAR) if frames.ir is not None else None
    crop = normalise_crop(rgb, depth_mm, ir, params)
    crop.box = tuple(int(round(v)) for v in sq)
    return crop


def face_relative_log(logs: np.ndarray, lit: np.ndarray, unit: float, clip: float) -> np.ndarray:
    """face_log IR from log IR (H x W) and where it is lit: minus the median over the lit central face region (the
    whole lit crop when fewer than 16 pixels there), in `unit`s, clipped to +-`clip`, 0 where unlit (also all 0 when
    nothing is lit). training augmentation (augment._reimage_ir) normalises a re-imaged crop with it too."""
    n = logs.shape[-1]
    c0, c1 = int(n * 0.25), int(n * 0.75)  # the central face region, as normalise_crop's statistics
    centre = logs[c0:c1, c0:c1][lit[c0:c1, c0:c1]]
    ref = centre if centre.size >= 16 else logs[lit]
    if not ref.size:
        return np.zeros(logs.shape, np.float32)
    r = np.clip((logs - float(np.median(ref))) / unit, -clip, clip)
    return np.where(lit, r, 0.0).astype(np.float32)


def _plane_relief(depth_mm: np.ndarray, valid: np.ndarray, c0: int, c1: int) -> np.ndarray | None:
    """Millimetres in front of the plane fitted to the valid central pixels (None: too few of them)."""
    n = depth_mm.shape[0]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    sel = np.zeros_like(valid)
    sel[c0:c1, c0:c1] = valid[c0:c1, c0:c1]
    if sel.sum() < 16:
        sel = valid
    if sel.sum() < 16:
        return None
    a = np.stack([xx[sel], yy[sel], np.ones(int(sel.sum()), np.float32)], 1).astype(np.float64)
    z = depth_mm[sel].astype(np.float64)
    coef = np.linalg.lstsq(a, z, rcond=None)[0]
    resid = z - a @ coef
    mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-6
    keep = np.abs(resid) < 3.0 * mad + 2.0  # refit without the background and flying pixels in the square
    if keep.sum() >= 16:
        coef = np.linalg.lstsq(a[keep], z[keep], rcond=None)[0]
    plane = (coef[0] * xx + coef[1] * yy + coef[2]).astype(np.float32)
    return plane - depth_mm  # nearer than the plane is positive


def normalise_crop(rgb: np.ndarray | None, depth_mm: np.ndarray | None, ir: np.ndarray | None,
                   params: PreprocessParams) -> FaceCrop:
    """Normalise already-cropped size x size images. depth_mm: distance in mm (0 = hole), larger = farther."""
    n = params.size
    present = np.array([rgb is not None, depth_mm is not None, ir is not None])
    for name, a in (("rgb", rgb), ("depth", depth_mm), ("ir", ir)):
        if a is not None and a.shape[:2] != (n, n):
            raise ValueError(f"{name} crop is {a.shape[:2]}, expected {(n, n)} (PreprocessParams.size)")

    c0, c1 = int(n * 0.25), int(n * 0.75)  # statistics over the central face region (the crop is 1.4x the face)
    if rgb is not None:
        x = rgb.astype(np.float32) / 255.0
        if params.rgb_norm == "face":
            mean = x[c0:c1, c0:c1].reshape(-1, 3).mean(0)
        else:
            mean = np.asarray(params.rgb_mean, np.float32)
        x = (x - mean) / np.asarray(params.rgb_std, np.float32)
        rgb_t = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
    else:
        rgb_t = np.zeros((3, n, n), np.float32)

    valid = np.zeros((n, n), bool)
    depth_t = np.zeros((1, n, n), np.float32)
    if depth_mm is not None:
        valid = depth_mm > 0
        centre = depth_mm[c0:c1, c0:c1][valid[c0:c1, c0:c1]]
        vals = centre if centre.size >= 16 else depth_mm[valid]  # fall back to the whole crop
        if params.depth_norm == "plane_mm":
            relief = _plane_relief(depth_mm, valid, c0, c1)
            if relief is not None:
                d = np.clip(relief / params.depth_unit_mm, -params.depth_clip, params.depth_clip)
                depth_t[0] = np.where(valid, d, 0.0).astype(np.float32)
        elif vals.size:
            med = float(np.median(vals))
            scale = max(1.4826 * float(np.median(np.abs(vals - med))), params.depth_min_scale_mm)
            d = np.clip((med - depth_mm) / scale, -params.depth_clip, params.depth_clip)
            depth_t[0] = np.where(valid, d, 0.0).astype(np.float32)

    ir_t = np.zeros((1, n, n), np.float32)
    if ir is not None:
        x = ir.astype(np.float32) / (65535.0 if ir.dtype == np.uint16 else 255.0)
        if x.ndim == 3:
            x = x[..., 0]
        if params.ir_norm == "face_log":
            lit = x > 0
            ir_t[0] = face_relative_log(np.log(np.maximum(x, 1.0 / 255.0)), lit, params.ir_log_unit, params.depth_clip)
        else:
            ir_t[0] = (x - x.mean()) / max(float(x.std()), params.ir_min_std)

    return FaceCrop(rgb=rgb_t, depth=depth_t, ir=ir_t, present=present, depth_valid=valid)
