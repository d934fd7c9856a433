"""A physics check beside the network: measurements of the face that a flat or curved sheet, a screen
or a printed eye cannot fake, each explainable in one line and each with its own limit.

- relief (depth, registered to colour): the face's 3-D points are fitted with a plane and with a
  quadric surface (z = a + bx + cy + dx^2 + exy + fy^2). A real face stands well off any plane (its
  dome and nose: 25-55 mm on the synthetic rig) and its nose stands off any quadric (7-19 mm). A print
  or a screen is a plane (`flat_face`); a sheet bent round a cylinder, or any smooth curve, is fitted
  by the quadric to within the depth noise (`no_facial_relief`). Both are attack evidence. With the
  detector's keypoints it also measures the nose against the eyes, each as its height off the fitted plane:
  on a live face the nose stands 25-35 mm nearer than the eyes (median on the rig), on a sheet about
  0 mm. The nose is searched for around its keypoint (the nearest fifth of the depths within NOSE_REACH box
  widths): BlazeFace puts the keypoint up to a quarter of the box off the nose on small or turned faces.
  Low-frequency depth noise (time-of-flight cameras above all) can lift a sheet's quadric residual
  past its limit; it rarely also puts a bump at the nose and hollows at both eyes (`no_nose_in_depth`,
  weaker evidence: `unknown`, since on cameras it was not tuned on a few live faces read low too).
- near-IR level (IR, registered): under the camera's own 850 nm illuminator skin returns a good part
  of the light (the face's median IR is 20-40% of full scale on the rig), a phone or monitor screen
  almost none (`face_dark_in_ir`, attack evidence). Compared with the sensor's full scale rather than
  with the background: the background is often out of depth range or is the attack instrument itself,
  and the face-to-background ratio spanned 0.08-1.9 over bona fide faces on the rig.
- pupils (IR, at the detector's eye keypoints): a live pupil is a dark disc in near-IR; most printing
  inks are transparent at 850 nm, so a printed eye barely shows (`no_pupils_in_ir`, weaker evidence:
  the frame is `unknown`, not `attack`). Corneal glints of the illuminator are not checked: the
  synthetic rig does not render them, so such a check could not be validated here.

It can only veto: its findings are fault reasons (attack or unknown), never a `live`. A check whose
inputs are missing (no depth on the face, no IR, no eye keypoints) says nothing (the pipeline's own
missing-modality and no-depth checks fail closed). With no network trained on real data (the
synthetic-only demo model on a real camera) it also serves as a model-free detector: `score` is the
worst check's margin past its limit mapped to [0, 1] (0.5 at the limit), judged at threshold 0.5.
That detector stops prints, screens and curved sheets; it does not stop masks (they have relief and
reflect IR) and it has been validated only on the synthetic rig.

Limits (PhysicsLimits) were set on the synthetic rig's seed-0 renders of every species and domain and
checked on seeds 5 and 6 (benchmarks/bench_physics.py); a real camera may need its own
(decision.physics_* config keys). The nose-over-eyes limit came later, from seeds 0-1 of the named domains
and the randomised family (many cameras): live faces' 1st percentile 8-10 mm, prints' and replays' 99th
at most 5 mm; it is reported on seeds 8-9, never looked at before. The nose search and the limit of 8 mm
came later still, from the same development seeds and the streaming pipeline on six development cameras (`rand`
seeds 0-1, `rand_heldout` seeds 2-5): live faces whose keypoints had slipped read 0-9 mm without the search; with
it the limit could rise from 6 mm, catching more paper glasses, while no development camera's live faces were
vetoed more often (at 10 mm one was). docs/demo-model.md reports it on fresh seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_fas.pipeline import decision as D

__all__ = ["PhysicsLimits", "PhysicsResult", "PhysicsCheck", "FaceDepth", "face_depth", "CHECKS", "MODES",
           "THRESHOLD", "choose_mode"]

CHECKS = ("relief", "ir", "eyes")
MODES = ("auto", "veto", "detector", "off")
THRESHOLD = 0.5  # the model-free detector's score threshold (the worst check exactly at its limit)
MARGIN_SCALE = 10.0  # score = sigmoid(-MARGIN_SCALE * relative margin): 20% past a limit -> 0.88
MIN_POINTS = 200  # valid depth pixels on the face needed to measure relief
EYE_RADIUS = 0.06  # half the side of the square at each eye keypoint whose median height is the eye's (box widths)
NOSE_REACH = 0.16  # half the side of the square around the nose keypoint searched for the nose (box widths)
NOSE_QUANTILE = 20  # the nose's height: this percentile of the heights there (its nearest fifth, not one pixel)


@dataclass(frozen=True)
class PhysicsLimits:
    min_plane_relief_mm: float = 12.0  # below: a plane explains the face (print, screen)
    min_quadric_relief_mm: float = 4.5  # below: a plane or a simple curve explains it (bent sheet)
    min_nose_over_eyes_mm: float = 8.0  # below: no nose near where the detector put it (a sheet, however noisy)
    min_face_ir: float = 0.10  # face median IR as a fraction of full scale; below: a screen
    min_pupil_contrast: float = 0.03  # dark-pupil depth relative to the eye region's IR level

    @classmethod
    def from_config(cls, decision_config) -> "PhysicsLimits":
        d = decision_config
        return cls(min_plane_relief_mm=d.physics_min_relief_mm, min_quadric_relief_mm=d.physics_min_nose_mm,
                   min_nose_over_eyes_mm=d.physics_min_nose_over_eyes_mm,
                   min_face_ir=d.physics_min_face_ir, min_pupil_contrast=d.physics_min_pupil_contrast)


@dataclass
class PhysicsResult:
    """What the check measured on one frame: values, findings (fault reasons), the detector score,
    and maps for the viewer (relief in mm above the fitted quadric over `map_box`, colour pixels)."""

    measurements: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    score: float | None = None
    maps: dict = field(default_factory=dict)
    map_box: tuple | None = None

    def to_dict(self) -> dict:
        return {"measurements": {k: (None if v is None else round(float(v), 4)) for k, v in self.measurements.items()},
                "findings": list(self.findings), "score": None if self.score is None else round(self.score, 4)}


def _inner_face(box, shape) -> tuple[int, int, int, int] | None:
    """The central part of a detector box that is face (no hair, ears or background)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    ix0, ix1 = int(round(x0 + 0.15 * w)), int(round(x1 - 0.15 * w))
    iy0, iy1 = int(round(y0 + 0.10 * h)), int(round(y1 - 0.05 * h))
    ix0, iy0 = max(ix0, 0), max(iy0, 0)
    ix1, iy1 = min(ix1, shape[1]), min(iy1, shape[0])
    return (ix0, iy0, ix1, iy1) if ix1 - ix0 >= 8 and iy1 - iy0 >= 8 else None


def least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normal equations (a few columns, thousands of rows: far cheaper than an SVD per frame)."""
    return np.linalg.solve(a.T @ a + 1e-9 * np.eye(a.shape[1]), a.T @ b)


@dataclass
class FaceSurface:
    """The inner face's depth (mm) as 3-D points: x, y at the face's median depth z0 (mm, camera axes:
    x right, y down, z away), z the median-smoothed depth; `patch` and `smooth` over the inner box."""

    inner: tuple
    patch: np.ndarray
    smooth: np.ndarray
    z0: float
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    def plane(self) -> np.ndarray:
        """(a, b, c) of the least-squares plane z = a + b x + c y."""
        return least_squares(np.stack([np.ones_like(self.x), self.x, self.y], 1), self.z)


def face_surface(depth_mm: np.ndarray, box, fx: float, fy: float, cx: float, cy: float) -> FaceSurface | None:
    """The inner face's surface points from a registered depth image (mm, 0 = hole); None when too little
    depth is valid."""
    inner = _inner_face(box, depth_mm.shape)
    if inner is None:
        return None
    x0, y0, x1, y1 = inner
    patch = depth_mm[y0:y1, x0:x1].astype(np.float32)
    valid = patch > 0
    if valid.sum() < MIN_POINTS:
        return None
    z0 = float(np.median(patch[valid]))
    valid &= np.abs(patch - z0) < 150.0  # hair, hands or background behind: not the face surface
    smooth = cv2.medianBlur(patch, 5)  # speckle noise of stereo depth; keeps the nose's edge
    valid &= smooth > 0
    if valid.sum() < MIN_POINTS:
        return None
    vv, uu = np.nonzero(valid)
    if vv.size > 2000:  # a regular subsample is enough for six parameters
        step = int(math.ceil(vv.size / 2000))
        vv, uu = vv[::step], uu[::step]
    return FaceSurface(inner, patch, smooth, z0, (uu + x0 - cx) / fx * z0, (vv + y0 - cy) / fy * z0,
                       smooth[vv, uu].astype(np.float64))


@dataclass
class FaceDepth:
    """One registered frame's depth in mm (float32), its colour intrinsics `k` and the face's surface points
    (None: too little depth on the face): measured once per frame for the physics check and the head pose."""

    depth_mm: np.ndarray
    k: object
    surface: FaceSurface | None


def face_depth(frames, box) -> FaceDepth | None:
    """FaceDepth of a frame set whose depth is registered to colour; None without depth or intrinsics."""
    cal = frames.calibration
    k = cal.color if cal is not None else None
    if frames.depth is None or not frames.registered or k is None:
        return None
    depth_mm = frames.depth.astype(np.float32) * np.float32(frames.depth_scale * 1000.0)
    return FaceDepth(depth_mm, k, face_surface(depth_mm, box, k.fx, k.fy, k.cx, k.cy))


def measure_relief(depth_mm: np.ndarray, box, fx: float, fy: float, cx: float, cy: float,
                   keypoints=None, surface: FaceSurface | None = None) -> dict | None:
    """Plane and quadric relief (mm) of the face inside `box` of a registered depth image (mm, 0 =
    hole), the map of its height above the quadric, and with the detector's `keypoints` (right eye, left
    eye, nose tip, ...) how much nearer the nose is than the eyes. None when too little depth is valid.
    `surface`: the face's points when already measured (face_depth)."""
    surface = surface if surface is not None else face_surface(depth_mm, box, fx, fy, cx, cy)
    if surface is None:
        return None
    (x0, y0, x1, y1), patch, smooth, z0 = surface.inner, surface.patch, surface.smooth, surface.z0
    x, y, z = surface.x, surface.y, surface.z
    c_plane = surface.plane()
    r_plane = z - (c_plane[0] + c_plane[1] * x + c_plane[2] * y)
    quad = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], 1)
    c_quad = least_squares(quad, z)
    above = -(z - quad @ c_quad)  # towards the camera is smaller z: the nose is above the quadric
    # the height map over the whole inner box, for the viewer
    yy, xx = np.mgrid[y0:y1, x0:x1]
    X, Y = (xx - cx) / fx * z0, (yy - cy) / fy * z0
    fit = c_quad[0] + c_quad[1] * X + c_quad[2] * Y + c_quad[3] * X * X + c_quad[4] * X * Y + c_quad[5] * Y * Y
    height = np.where(patch > 0, fit - smooth, np.nan).astype(np.float32)
    nose = None
    if keypoints is not None:  # the plane-relative map is only needed at the keypoints
        nose = _nose_over_eyes(_off_plane(depth_mm, box, c_plane, z0, fx, fy, cx, cy), box, keypoints)
    return {"plane_relief_mm": float(np.percentile(r_plane, 95) - np.percentile(r_plane, 5)),
            "quadric_relief_mm": float(np.percentile(above, 97) - np.percentile(above, 50)),
            "nose_over_eyes_mm": nose,
            "distance_m": z0 / 1000.0, "map": height, "map_box": surface.inner}


def _off_plane(depth_mm: np.ndarray, box, c_plane, z0: float, fx: float, fy: float, cx: float, cy: float):
    """The height (mm) of every depth in the whole detector box off the face's fitted plane, as ((x0, y0), map),
    NaN where there is no depth or it is not the face's surface. The whole box, not the inner face: on a turned
    head an eye's disc reaches past the inner box (on a fifth of live frames on the rig's development seeds)."""
    h, w = depth_mm.shape
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    raw = depth_mm[y0:y1, x0:x1].astype(np.float32)
    smooth = cv2.medianBlur(raw, 5)
    ok = (raw > 0) & (smooth > 0) & (np.abs(raw - z0) < 150.0)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    plane = c_plane[0] + c_plane[1] * (xx - cx) / fx * z0 + c_plane[2] * (yy - cy) / fy * z0
    return (x0, y0), np.where(ok, smooth - plane, np.nan)


def _nose_over_eyes(off_plane, box, keypoints) -> float | None:
    """Mean height of the two eyes off the plane minus the nose's (mm; positive: the nose is nearer). An eye's
    height is the median over a square of EYE_RADIUS box widths at its keypoint; the nose's is the
    NOSE_QUANTILE-th percentile over a square of NOSE_REACH box widths around its keypoint, so a keypoint that
    slipped off the tip still finds the nose. Measured against the plane, so a tilted sheet reads 0.
    off_plane: `_off_plane`'s (origin, map). None without keypoints, or when a square leaves the box or holds < 5
    depths."""
    if keypoints is None or len(keypoints) < 3:
        return None
    (x0, y0), heights_map = off_plane
    width = box[2] - box[0]
    heights = []
    for i, (kx, ky) in enumerate(np.asarray(keypoints, dtype=np.float64)[:3]):
        nose = i == 2
        r = max(2, int(round((NOSE_REACH if nose else EYE_RADIUS) * width)))
        u, v = int(round(kx)) - x0, int(round(ky)) - y0
        if nose:  # the search may reach past the box on a turned face: keep what lies inside
            square = heights_map[max(0, v - r):v + r + 1, max(0, u - r):u + r + 1]
        elif u - r < 0 or v - r < 0 or u + r + 1 > heights_map.shape[1] or v + r + 1 > heights_map.shape[0]:
            return None
        else:
            square = heights_map[v - r:v + r + 1, u - r:u + r + 1]
        square = square[np.isfinite(square)]
        if square.size < 5:
            return None
        heights.append(float(np.percentile(square, NOSE_QUANTILE) if nose else np.median(square)))
    eyes, nose = 0.5 * (heights[0] + heights[1]), heights[2]
    return eyes - nose  # depth grows away from the camera: a nearer nose has the smaller height


def measure_face_ir(ir: np.ndarray, box) -> float | None:
    """The face's median IR as a fraction of the sensor's full scale."""
    inner = _inner_face(box, ir.shape)
    if inner is None:
        return None
    x0, y0, x1, y1 = inner
    full = 255.0 if ir.dtype == np.uint8 else float(np.iinfo(ir.dtype).max) if ir.dtype.kind == "u" else 1.0
    return float(np.median(ir[y0:y1, x0:x1])) / full


def measure_pupils(ir: np.ndarray, box, keypoints) -> float | None:
    """Mean dark-pupil contrast at the two eye keypoints: (median of the eye region - its darkest smoothed
    spot) / median. None without keypoints or when an eye is outside the image."""
    if keypoints is None or len(keypoints) < 2:
        return None
    w = box[2] - box[0]
    r = max(3, int(round(0.09 * w)))
    img = ir.astype(np.float32)
    out = []
    for ex, ey in np.asarray(keypoints, dtype=np.float64)[:2]:
        ex, ey = int(round(ex)), int(round(ey))
        if ex - r < 0 or ey - r < 0 or ex + r + 1 > img.shape[1] or ey + r + 1 > img.shape[0]:
            return None
        p = img[ey - r:ey + r + 1, ex - r:ex + r + 1]
        level = float(np.median(p))
        if level <= 0:
            return None
        darkest = float(cv2.GaussianBlur(p, (0, 0), max(1.0, r / 4)).min())  # blur out the emitter's dots
        out.append((level - darkest) / level)
    return float(np.mean(out))


def _margin(value: float, limit: float) -> float:
    """Relative headroom of a value over its lower limit (negative = past the limit)."""
    return (value - limit) / max(abs(limit), 1e-9)


class PhysicsCheck:
    """Runs the enabled checks on a registered frame set and the face box."""

    def __init__(self, limits: PhysicsLimits | None = None, checks=CHECKS):
        bad = [c for c in checks if c not in CHECKS]
        if bad:
            raise ValueError(f"physics checks {bad}: expected some of {', '.join(CHECKS)} (decision.physics_checks)")
        self.limits = limits or PhysicsLimits()
        self.checks = tuple(checks)

    @classmethod
    def from_config(cls, decision_config) -> "PhysicsCheck":
        return cls(PhysicsLimits.from_config(decision_config), decision_config.physics_checks)

    def check(self, frames, box, keypoints=None, face: FaceDepth | None = None) -> PhysicsResult:
        """Measure the face at `box` (colour pixels) of registered `frames`; `face`: face_depth(frames, box)
        when the caller has it already."""
        lim, res = self.limits, PhysicsResult()
        margins = []
        if "relief" in self.checks:
            face = face if face is not None else face_depth(frames, box)
            if face is not None and face.surface is not None:
                k = face.k
                rel = measure_relief(face.depth_mm, box, k.fx, k.fy, k.cx, k.cy, keypoints, face.surface)
                if rel is not None:
                    res.measurements.update(plane_relief_mm=rel["plane_relief_mm"],
                                            quadric_relief_mm=rel["quadric_relief_mm"])
                    nose = rel["nose_over_eyes_mm"]
                    if nose is not None:
                        res.measurements["nose_over_eyes_mm"] = nose
                        margins.append(_margin(nose, lim.min_nose_over_eyes_mm))
                    res.maps["relief"], res.map_box = rel["map"], rel["map_box"]
                    margins += [_margin(rel["plane_relief_mm"], lim.min_plane_relief_mm),
                                _margin(rel["quadric_relief_mm"], lim.min_quadric_relief_mm)]
                    if rel["plane_relief_mm"] < lim.min_plane_relief_mm:
                        res.findings.append(D.reason(D.FLAT_FACE, f"depth relief {rel['plane_relief_mm']:.1f} mm < "
                                                                  f"{lim.min_plane_relief_mm:g} mm: a plane (print or screen)"))
                    elif rel["quadric_relief_mm"] < lim.min_quadric_relief_mm:
                        res.findings.append(D.reason(D.NO_FACIAL_RELIEF, f"nose relief {rel['quadric_relief_mm']:.1f} mm "
                                                                         f"< {lim.min_quadric_relief_mm:g} mm: a smooth "
                                                                         "curved surface (bent sheet)"))
                    elif nose is not None and nose < lim.min_nose_over_eyes_mm:
                        res.findings.append(D.reason(D.NO_NOSE_IN_DEPTH, f"nose {nose:.1f} mm nearer than the eyes "
                                                                         f"< {lim.min_nose_over_eyes_mm:g} mm: no "
                                                                         "nose in depth (a sheet)"))
        ir_ok = frames.ir is not None and (frames.registered or frames.rgb is None)
        if "ir" in self.checks and ir_ok:
            self._lower_limit(res, margins, "face_ir", measure_face_ir(frames.ir, box), lim.min_face_ir,
                              D.FACE_DARK_IN_IR, "face IR {v:.0%} of full scale < {lim:.0%}: a screen, not skin")
        if "eyes" in self.checks and ir_ok:
            self._lower_limit(res, margins, "pupil_contrast", measure_pupils(frames.ir, box, keypoints),
                              lim.min_pupil_contrast, D.NO_PUPILS_IN_IR,
                              "pupil contrast {v:.2f} < {lim:g}: printed eyes?")
        if margins and ("relief" not in self.checks or "plane_relief_mm" in res.measurements):
            # the model-free detector's score: the worst check's margin, 0.5 exactly at its limit
            res.score = float(1.0 / (1.0 + math.exp(MARGIN_SCALE * min(margins))))
        return res


    @staticmethod
    def _lower_limit(res: PhysicsResult, margins: list, name: str, value, limit: float, code: str, why: str) -> None:
        """Record a measurement that must reach `limit`; a finding with `why` when it does not."""
        if value is None:
            return
        res.measurements[name] = value
        margins.append(_margin(value, limit))
        if value < limit:
            res.findings.append(D.reason(code, why.format(v=value, lim=limit)))


def choose_mode(setting: str, device_driver: str, manifest: dict | None) -> tuple[str, str]:
    """(mode, why) for decision.physics = auto | veto | detector | off.

    auto: the model-free detector on a real camera when the artifact was trained on synthetic data
    only (its scores mean nothing on real faces), else the network with the physics check as a veto."""
    if setting not in MODES:
        raise ValueError(f"decision.physics {setting!r}: expected one of {', '.join(MODES)}")
    if setting != "auto":
        return setting, f"decision.physics = {setting}"
    source = ((manifest or {}).get("training") or {}).get("source")
    if source == "synthetic" and device_driver not in ("synthetic", ""):
        return "detector", (f"auto: a {device_driver} camera and a model trained on synthetic data only: the "
                            "model-free physics check decides (prints, screens, bent sheets; not masks)")
    return "veto", ("auto: the network decides, the physics check can veto" +
                    (" (synthetic rig)" if device_driver == "synthetic" else ""))
