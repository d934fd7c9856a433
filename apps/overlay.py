"""Pure drawing helpers for the GUI (numpy + OpenCV, no Qt), so they are testable on their own.

Everything takes and returns H x W x 3 uint8 RGB images. `render_overlay(frames, verdict)` is the one
the viewer calls per displayed frame: the colour image with the face box coloured by verdict and the
model's spoof-trace or uncertainty map, or the physics check's depth-relief map, blended over the face.

Maps are drawn on an absolute scale, the same for every frame: the artifact's `maps.scales` (0 to the
validation 99th percentile of the map's pixels, edge_fas.uncertainty.fit_map_scales) for the trace and
the uncertainty, 0-20 mm for the relief. Only a map without a recorded scale (an artifact exported
before calibration) falls back to its own per-frame range, and its legend says "relative".
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_fas.types import FrameSet, ModelOutput, Verdict

# Verdict colours in RGB: green live, red attack, amber unknown (also used when there is no verdict yet).
VERDICT_COLOURS = {"live": (40, 200, 70), "attack": (230, 40, 40), "unknown": (240, 170, 20)}
NO_VERDICT_COLOUR = (150, 150, 150)
MAP_KINDS = ("trace", "uncertainty", "relief")
RELIEF_SCALE_MM = (0.0, 20.0)  # height above the fitted smooth surface: a nose reaches 15-25 mm


def verdict_colour(verdict: Verdict | None) -> tuple[int, int, int]:
    return NO_VERDICT_COLOUR if verdict is None else VERDICT_COLOURS[verdict.verdict]


def colormap(values: np.ndarray, lo: float | None = None, hi: float | None = None,
             cmap: int = cv2.COLORMAP_TURBO, invalid: np.ndarray | None = None) -> np.ndarray:
    """Map a 2-D float array to RGB with an OpenCV colour map. lo/hi default to the finite range;
    pixels in `invalid` (bool mask) are drawn black."""
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"colormap: expected a 2-D array, got shape {v.shape}")
    finite = np.isfinite(v) if invalid is None else np.isfinite(v) & ~invalid
    if lo is None:
        lo = float(v[finite].min()) if finite.any() else 0.0
    if hi is None:
        hi = float(v[finite].max()) if finite.any() else 1.0
    span = hi - lo if hi > lo else 1.0
    scaled = (v - np.float32(lo)) * np.float32(255.0 / span)
    np.clip(scaled, 0.0, 255.0, out=scaled)  # NaN stays NaN: masked to black below
    u8 = np.nan_to_num(scaled, copy=False).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(u8, cmap), cv2.COLOR_BGR2RGB)
    rgb[~finite] = 0
    return rgb


def shrink(image: np.ndarray, max_width: int | None) -> np.ndarray:
    """Subsample (nearest: depth must not be blended across edges) to at most max_width columns."""
    if max_width is None or image.shape[1] <= max_width:
        return image
    step = -(-image.shape[1] // max_width)
    return image[::step, ::step]


def depth_view(frames: FrameSet, near_m: float = 0.2, far_m: float = 1.5,
               max_width: int | None = None) -> np.ndarray | None:
    """The depth image colour-mapped over the working range (near red, far blue); holes black.
    max_width subsamples first: the GUI's small view does not need every pixel mapped."""
    if frames.depth is None:
        return None
    d = shrink(frames.depth, max_width).astype(np.float32) * np.float32(frames.depth_scale)
    return colormap(far_m + near_m - np.clip(d, near_m, far_m), near_m, far_m, invalid=d <= 0)


def ir_view(frames: FrameSet, max_width: int | None = None) -> np.ndarray | None:
    """The IR image as grey RGB, stretched to 8 bits (16-bit IR is scaled by its 99th percentile)."""
    ir = frames.ir
    if ir is None:
        return None
    ir = shrink(ir, max_width)
    if ir.dtype != np.uint8:
        top = float(np.percentile(ir, 99)) or 1.0
        ir = (np.clip(ir.astype(np.float32) / top, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(ir), cv2.COLOR_GRAY2RGB) if ir.ndim == 2 else ir


def pick_map(output: ModelOutput | None, kind: str = "auto", physics=None) -> tuple[str, np.ndarray] | None:
    """The 2-D map to blend: ('trace', map), ('uncertainty', map) or ('relief', map), or None.

    trace (1, C, H, W) is reduced to its per-pixel magnitude; uncertainty (1, M, h, w) to the mean
    over modalities; relief is the physics check's height map (mm). kind='auto' prefers the trace,
    then the uncertainty, then the relief."""
    kinds = MAP_KINDS if kind == "auto" else (kind,)
    for k in kinds:
        if k not in MAP_KINDS:
            raise ValueError(f"map kind {k!r}: expected one of {MAP_KINDS} or 'auto'")
        if k == "relief":
            a = None if physics is None else getattr(physics, "maps", {}).get("relief")
        else:
            a = None if output is None else getattr(output, k)
        if a is None:
            continue
        a = np.asarray(a, dtype=np.float32)
        while a.ndim > 3:  # drop the batch axis (one face)
            a = a[0]
        if a.ndim == 3:
            a = np.sqrt((a ** 2).sum(axis=0)) if k == "trace" else a.mean(axis=0)
        return k, a
    return None


def map_scale(kind: str, scales: dict | None) -> tuple[float, float] | None:
    """(lo, hi) of the absolute colour scale for `kind`, or None (per-frame range) when none is recorded."""
    if kind == "relief":
        return RELIEF_SCALE_MM
    s = (scales or {}).get(kind)
    if not s:
        return None
    return float(s["lo"]), float(s["hi"])


def clip_box(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def blend_map(image: np.ndarray, box, values: np.ndarray, alpha: float = 0.5,
              lo: float = 0.0, hi: float | None = None) -> np.ndarray:
    """Blend a colour-mapped 2-D map over the box of `image` (a copy is returned). The map is resized
    to the box; parts of the box outside the image are cut off."""
    out = image.copy()
    h, w = image.shape[:2]
    b = clip_box(box, w, h)
    if b is None:
        return out
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    hi = float(np.nanmax(values)) if hi is None else hi
    rgb = cv2.resize(colormap(values, lo, max(hi, lo + 1e-6), cmap=cv2.COLORMAP_JET), (bw, bh),
                     interpolation=cv2.INTER_LINEAR)
    cx0, cy0, cx1, cy1 = b
    part = np.ascontiguousarray(rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0])
    region = np.ascontiguousarray(out[cy0:cy1, cx0:cx1])
    out[cy0:cy1, cx0:cx1] = cv2.addWeighted(region, 1.0 - alpha, part, alpha, 0.0)
    return out


def draw_box(image: np.ndarray, box, colour, thickness: int = 3) -> np.ndarray:
    out = image.copy()
    h, w = image.shape[:2]
    b = clip_box(box, w, h)
    if b is not None:
        cv2.rectangle(out, (b[0], b[1]), (b[2] - 1, b[3] - 1), tuple(int(c) for c in colour), thickness)
    return out


def legend(width: int = 160, height: int = 14) -> np.ndarray:
    """A horizontal colour bar for the blended map, low on the left; the caption is drawn by the GUI."""
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    return colormap(ramp, 0.0, 1.0, cmap=cv2.COLORMAP_JET)


def legend_caption(kind: str, scale: tuple[float, float] | None = None) -> str:
    """The legend's words: what the map is and its absolute range (or 'relative' when it has none)."""
    name = {"trace": "spoof trace", "uncertainty": "uncertainty", "relief": "depth relief"}[kind]
    if scale is None:  # scaled to its own maximum per frame: the colours compare nothing across frames
        return f"{name} (relative): low \u2192 high"
    unit = " mm" if kind == "relief" else ""
    source = "" if kind == "relief" else ", validation scale"
    return f"{name}: {scale[0]:.3g} \u2192 {scale[1]:.3g}{unit}{source}"


def render_overlay(frames: FrameSet, verdict: Verdict | None, show_map: bool = True,
                   map_kind: str = "auto", alpha: float = 0.5,
                   scales: dict | None = None) -> tuple[np.ndarray, str | None]:
    """The colour view for one displayed frame: (image, kind of blended map or None).

    scales: the artifact's `maps.scales` ({kind: {lo, hi}}) for an absolute colour scale. Frames
    without colour are shown as their IR (grey) so the operator still sees the scene."""
    if frames.rgb is not None:
        image = frames.rgb
    else:
        image = ir_view(frames)
        if image is None:
            raise ValueError("render_overlay: the frame set has neither colour nor IR to show")
    if verdict is None or verdict.box is None:
        return image.copy(), None
    kind = None
    if show_map:
        physics = getattr(verdict, "physics", None)
        picked = pick_map(verdict.output, map_kind, physics)
        if picked is not None:
            kind, values = picked
            scale = map_scale(kind, scales)
            box = getattr(physics, "map_box", None) if kind == "relief" else verdict.box
            if box is not None:
                lo, hi = scale if scale is not None else (0.0, None)
                image = blend_map(image, box, np.nan_to_num(values, nan=lo), alpha, lo=lo, hi=hi)
            else:
                kind = None
    return draw_box(image, verdict.box, verdict_colour(verdict)), kind


def latency_text(latency_ms: dict[str, float]) -> str:
    """'capture 3.1 · detect 8.0 · ... ms' in pipeline order, unknown stages after."""
    order = ["capture_age", "capture", "register", "registration", "detect", "detection", "pose", "crop",
             "physics", "infer", "inference", "decide", "decision", "total"]
    keys = sorted(latency_ms, key=lambda k: (order.index(k) if k in order else len(order), k))
    return " \u00b7 ".join(f"{k} {latency_ms[k]:.1f}" for k in keys) + (" ms" if keys else "")


def pose_text(verdict: Verdict | None) -> str:
    """'head yaw -12°, pitch 5°' from the verdict's measured pose ('' when there is none): for whoever
    mounts the camera, which decides how far people must tilt their heads to face it."""
    pose = getattr(verdict, "pose", None)
    if pose is None:
        return ""
    return f"head yaw {pose.yaw_deg:+.0f}\u00b0, pitch {pose.pitch_deg:+.0f}\u00b0 (+: right, down)"
