"""A sample's face region at its source resolution, and the one step that turns it into a FaceCrop.

Decoding and face detection (the slow part of every sample) end in a SourceCrop: the pixels around
the face as the source has them, before any resize. `finish(src, params)` resizes and normalises it
through edge_fas.preprocess, the functions the live pipeline uses, so a streamed or cached sample
gives the same FaceCrop as decoding it afresh. The crop cache (cache.py) stores SourceCrops, and
training augments them here, before the resize: a zoom or shift samples real source pixels, never an
upscaled model-size crop.

Two kinds of source:

- "face": a detected (or known) face box in a registered frame. The SourceCrop keeps the crop square
  (edge_fas.preprocess.square_box) widened by CONTEXT plus a 2-pixel border for the bilinear kernel,
  exactly as the frame has those pixels, and where they sat in the frame; `finish` puts them back at
  that place on a blank canvas and calls `crop_face` with the frame's own box, so the result is
  bit-identical to the live pipeline's crop of the full frame (shifting the box to the cut's
  coordinates instead changes OpenCV's fixed-point rounding: nearest-neighbour depth picks a
  different pixel at exact ties).
- "whole": a release that ships face crops (CASIA-SURF, CeFA, WMCA-Image, PADISI, Idiap's WMCA): the
  image is the crop and is resized to the model input as a whole (area for colour and IR, nearest
  for depth). An image larger than MAX_SIDE_FACTOR x the input on an axis is first area-reduced to
  that size, so what is decoded, cached and augmented stays bounded (a 640x480 image at 224 px keeps
  448x448).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_fas.preprocess import PreprocessParams, crop_face, framed_box, normalise_crop, square_box
from edge_fas.types import FaceCrop, FrameSet

__all__ = ["SourceCrop", "CONTEXT", "MAX_SIDE_FACTOR", "face_source", "whole_source", "finish", "compact_depth"]

CONTEXT = 1.3          # the kept square around the crop square: room for the augmentation's zoom-out and shift
MAX_SIDE_FACTOR = 2    # "whole" sources keep at most this many times the model input per axis
MODES = ("face", "whole")


@dataclass
class SourceCrop:
    """The face region of one sample before the resize to the model input.

    rgb: H x W x 3 uint8 (RGB) or None; ir: H x W uint8/uint16 or None.
    depth: "face": the frame's raw units (metres = depth * depth_scale, 0 = hole); "whole": millimetres
    (uint16 when that is lossless, else float32). "face" only: box, the face box in frame pixels, and
    origin, the frame pixel (x, y) of these arrays' top left corner."""

    mode: str
    rgb: np.ndarray | None
    depth: np.ndarray | None
    ir: np.ndarray | None
    box: tuple[float, float, float, float] | None = None
    depth_scale: float = 0.001
    origin: tuple[int, int] = (0, 0)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"SourceCrop mode {self.mode!r}: expected one of {MODES}")
        if self.mode == "face" and self.box is None:
            raise ValueError("a 'face' SourceCrop needs the face box")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rgb, self.depth, self.ir) if a is not None)


def compact_depth(depth_mm: np.ndarray) -> np.ndarray:
    """Depth in mm as uint16 where that loses nothing (8-bit releases, integer mm), else float32."""
    d = np.asarray(depth_mm)
    if d.dtype == np.uint16:
        return d
    d = d.astype(np.float32, copy=False)
    if d.size and np.isfinite(d).all() and d.min() >= 0 and d.max() <= 65535:
        u = d.astype(np.uint16)
        if np.array_equal(u, d):
            return u
    return d


def face_source(frames: FrameSet, box, params: PreprocessParams, context: float = CONTEXT) -> SourceCrop:
    """The pixels crop_face reads for the face the detector found at `box` (framed as params.framing says,
    edge_fas.preprocess.framed_box), widened by `context`, cut from a registered frame (outside the frame stays
    outside: the cut is clipped and crop_face pads with 0 as live)."""
    if (frames.depth is not None or frames.ir is not None) and not frames.registered and frames.rgb is not None:
        from edge_fas.errors import CalibrationError

        raise CalibrationError("a face crop needs depth and IR registered to colour; call "
                               "edge_fas.calibration.register_to_color(frames) first")
    box = framed_box(frames, box, params)
    first = next(a for a in (frames.rgb, frames.depth, frames.ir) if a is not None)
    h, w = first.shape[:2]
    sx0, sy0, sx1, sy1 = square_box(box, params.crop_scale)
    cx, cy, reach = (sx0 + sx1) / 2, (sy0 + sy1) / 2, (sx1 - sx0) / 2 * context + 2
    x0 = min(max(math.floor(cx - reach), 0), w - 1)
    y0 = min(max(math.floor(cy - reach), 0), h - 1)
    x1 = max(min(math.ceil(cx + reach), w), x0 + 1)
    y1 = max(min(math.ceil(cy + reach), h), y0 + 1)
    cut = lambda a: None if a is None else np.ascontiguousarray(a[y0:y1, x0:x1])  # noqa: E731
    return SourceCrop("face", cut(frames.rgb), cut(frames.depth), cut(frames.ir), tuple(float(v) for v in box),
                      float(frames.depth_scale), (x0, y0))


def whole_source(rgb, depth_mm, ir, params: PreprocessParams) -> SourceCrop:
    """A release's face-crop image (registered colour, depth in mm, IR), kept whole, reduced to at most
    MAX_SIDE_FACTOR x the model input per axis."""
    first = next(a for a in (rgb, depth_mm, ir) if a is not None)
    h, w = first.shape[:2]
    limit = MAX_SIDE_FACTOR * params.size
    size = (min(w, limit), min(h, limit))
    if size != (w, h):
        rs = lambda a, interp: None if a is None else cv2.resize(a, size, interpolation=interp)  # noqa: E731
        rgb, depth_mm, ir = rs(rgb, cv2.INTER_AREA), rs(depth_mm, cv2.INTER_NEAREST), rs(ir, cv2.INTER_AREA)
    return SourceCrop("whole", rgb, None if depth_mm is None else compact_depth(depth_mm), ir)


def finish(src: SourceCrop, params: PreprocessParams, geometry=None) -> FaceCrop:
    """Resize and normalise a SourceCrop into the model's FaceCrop (edge_fas.preprocess).

    geometry: None, or (scale, (dx, dy)): zoom by `scale` about the crop's centre and move the content
    by (dx, dy) fractions of the side, applied at the source's resolution before the resize."""
    if src.mode == "face":
        ox, oy = src.origin
        canvas = lambda a: None if a is None else _place(a, ox, oy)  # noqa: E731
        frames = FrameSet(rgb=canvas(src.rgb), depth=canvas(src.depth), ir=canvas(src.ir), depth_scale=src.depth_scale,
                          registered=True)
        if geometry is None:
            return crop_face(frames, src.box, params)
        scale, (dx, dy) = geometry
        x0, y0, x1, y1 = square_box(src.box, params.crop_scale)
        side = (x1 - x0) / scale
        cx, cy = (x0 + x1) / 2 - dx * side, (y0 + y1) / 2 - dy * side
        return crop_face(frames, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
                         replace(params, crop_scale=1.0))
    rgb, ir = src.rgb, src.ir
    depth = None if src.depth is None else src.depth.astype(np.float32, copy=False)
    if geometry is not None:
        rgb, depth, ir = (_zoom_shift(a, geometry, cv2.INTER_NEAREST if a is depth else cv2.INTER_LINEAR)
                          for a in (rgb, depth, ir))
    n = params.size
    rs = lambda a, interp: None if a is None else cv2.resize(a, (n, n), interpolation=interp)  # noqa: E731
    return normalise_crop(rs(rgb, cv2.INTER_AREA), rs(depth, cv2.INTER_NEAREST), rs(ir, cv2.INTER_AREA), params)


def _place(a: np.ndarray, x: int, y: int) -> np.ndarray:
    """`a` at (x, y) on a zero canvas reaching to its far corner (what crop_face reads of the frame)."""
    out = np.zeros((y + a.shape[0], x + a.shape[1], *a.shape[2:]), a.dtype)
    out[y:, x:] = a
    return out


def _zoom_shift(a, geometry, interpolation):
    """Zoom about the centre and shift one H x W[ x C] image at its own resolution (edges repeated)."""
    if a is None:
        return None
    scale, (dx, dy) = geometry
    h, w = a.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[scale, 0.0, cx - scale * cx + dx * w], [0.0, scale, cy - scale * cy + dy * h]], np.float64)
    return cv2.warpAffine(a, m, (w, h), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
