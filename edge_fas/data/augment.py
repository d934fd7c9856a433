"""Training augmentation of normalised face crops: one function of (arrays, rng, params).

    rgb, depth, ir, present = augment(rgb, depth, ir, present, rng, AugmentParams(photometric=0.8))

Inputs are one sample's crops as edge_fas.preprocess makes them (rgb 3xSxS, depth 1xSxS, ir 1xSxS,
float32, already normalised) and its present mask (3,). Steps, in order:

1. geometry, all modalities together: horizontal flip, a small zoom and shift (the live detector's box
   moves and breathes from frame to frame: measured on the rig, centre 4-7% and size 8% of the box);
2. colour gain and offset (the papers' brightness/contrast augmentation);
3. per-modality photometric invariance (`photometric` > 0; off by default): changes a renderer or a
   camera makes that no physical cue depends on, drawn independently per modality so the network
   cannot rely on one modality's rendering style:
   - colour: per-channel cast, gamma, desaturation to grey, blur or sharpening, noise; with `rgb_surround`
     > 0 also a random lightness offset of the colour outside the face against the face: in the rig's data
     the face-to-surround level follows the wearer's skin tone and a model that cannot see the face's own
     level (rgb_norm: face) reads tone through it (tried once, it widened the skin-tone gap instead:
     docs/demo-model.md);
   - IR: contrast (an IR gamma: a scale of log-ratio IR), a smooth uneven-illumination field, blur or
     sharpening, noise; with `ir_surround` > 0 also a random offset of the IR outside the face (hair,
     ears, neck, background) against the face: how bright a person's surround is against their skin
     varies between people and is not the material of the face (tried once on the silicone specialist,
     it did not weaken the link between bright hair and rejected bona fide: docs/demo-model.md);
   - depth: noise, blur, extra holes (blobs set to 0, as the sensor reports them);
   relief and reflectance themselves are left alone: the depth relief's amplitude and the IR ratio
   between face and material are the cues;
   before these, with probability `ir_sensor` (off by default), the IR crop is seen again through a drawn
   8-bit imager (face level, shot and read noise, rounding, clipping): what a dim or a saturating imager
   does to face-relative IR, which the normalisation cannot undo;
4. cutout per modality (a square set to 0);
5. modality dropout: a present modality is removed (zeros, present False) with its probability, never
   the last one left.

A step whose probability is 0 draws no random numbers, so the default parameters reproduce the
augmentation the project trained with before this module existed, draw for draw.

Step 1 is `draw_geometry` plus `zoom_shift`, steps 2-5 are `appearance`: streaming training
(edge_fas.data.stream) applies the zoom and shift at the source crop's own resolution instead (real
context comes in at the border), from the same draws in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import cv2
import numpy as np

from edge_fas.errors import ConfigError
from edge_fas.preprocess import face_relative_log

MODALITIES = ("rgb", "depth", "ir")


@dataclass(frozen=True)
class AugmentParams:
    flip: float = 0.5  # probability of a horizontal flip
    zoom: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06  # fraction of the side, each axis
    rgb_gain: tuple[float, float] = (0.8, 1.2)  # on normalised colour
    rgb_offset: float = 0.2
    photometric: float = 0.0  # probability per modality of its photometric-invariance set (step 3)
    rgb_cast: float = 0.15  # per-channel gain range +-
    rgb_gamma: tuple[float, float] = (0.7, 1.4)
    rgb_gray: float = 0.15  # probability of desaturating to grey
    ir_contrast: tuple[float, float] = (0.7, 1.4)
    ir_shading: float = 0.4  # amplitude of the smooth illumination field (normalised units)
    # largest offset of the IR outside the face ellipse against inside (normalised units; 0 = off). Off by default:
    # at 1.0 it lowered rigid-mask, paper-mask and partial-attack AUC and moved neither silicone nor the skin gap
    # (docs/demo-model.md, "Trained on the current rig, with and without ir_surround")
    ir_surround: float = 0.0
    # the colour counterpart: largest lightness offset (normalised units, the same on all three channels) of the
    # colour outside the face ellipse against inside (0 = off). Off by default: at 1.0 on an rgb_norm: face model it
    # widened the skin-tone gap and cost paper masks, prints and partial attacks (docs/demo-model.md, "Training
    # noise, and selection families that can see the skin-tone gradient")
    rgb_surround: float = 0.0
    # probability of seeing the IR crop again through a drawn 8-bit imager (_reimage_ir; 0 = off, no draws): the
    # face's level, shot and read noise, quantisation and clipping. Face-relative IR (ir_norm: face_log) cancels an
    # imager's gain but not what gain does to the signal: a dim imager (low gain, weak emitter, far subject) leaves
    # few levels and much noise, a bright one clips skin. Needs ir_norm: face_log (training.config.data_params
    # checks it and fills ir_log_unit and ir_clip from the preprocessing). Off by default: at 0.5 it cost paper masks
    # AUC on every selection family and moved nothing beyond the seed-to-seed change (docs/demo-model.md, "Which
    # shift costs what, and a dim near-IR imager")
    ir_sensor: float = 0.0
    ir_sensor_level: tuple[float, float] = (12.0, 230.0)  # the face's median level, 8-bit units (log-uniform)
    ir_sensor_gain: tuple[float, float] = (2.0, 40.0)  # electrons per 8-bit unit (log-uniform): shot noise
    ir_sensor_read: tuple[float, float] = (0.5, 4.0)  # read noise, 8-bit units
    ir_log_unit: float = 0.5  # face_log's unit and clip (edge_fas.preprocess.PreprocessParams)
    ir_clip: float = 4.0
    # probability of seeing all three crops through `resample_scale` times fewer pixels per side (area down, linear
    # up; _resample): a face farther away, a wider field of view or a lower-resolution sensor. Off by default and not
    # yet trained with: on the selection family bona fide scores rise with the subject's distance and fall with the
    # depth resolution (docs/demo-model.md, "r39"), which is what it is meant to be tried on
    resample: float = 0.0
    resample_scale: tuple[float, float] = (1.0, 3.0)
    depth_holes: float = 0.3  # probability of extra hole blobs
    blur: float = 1.0  # largest blur sigma, pixels at 64 px (scaled with the crop)
    noise: float = 0.12  # largest noise std, normalised units
    cutout: float = 0.3  # probability per modality
    drop: dict = field(default_factory=dict)  # modality -> probability of removing it

    @classmethod
    def from_dict(cls, d: dict | None, **defaults) -> "AugmentParams":
        """From a config mapping; unknown keys and bad values are errors that name them."""
        allowed = {f.name for f in fields(cls)}
        merged = {**defaults, **(d or {})}
        unknown = sorted(set(merged) - allowed)
        if unknown:
            raise ConfigError(f"augmentation: unknown key(s) {unknown}; known: {sorted(allowed)}")
        for k in ("zoom", "rgb_gain", "rgb_gamma", "ir_contrast", "ir_sensor_level", "ir_sensor_gain", "ir_sensor_read",
                  "resample_scale"):
            if k in merged:
                merged[k] = tuple(float(v) for v in merged[k])
        params = cls(**merged)
        for k in ("flip", "photometric", "rgb_gray", "depth_holes", "cutout", "ir_sensor", "resample"):
            if not 0.0 <= float(getattr(params, k)) <= 1.0:
                raise ConfigError(f"augmentation: {k}={getattr(params, k)} must be a probability in [0, 1]")
        for k in ("ir_sensor_level", "ir_sensor_gain"):
            lo, hi = getattr(params, k)
            if not 0 < lo <= hi:
                raise ConfigError(f"augmentation: {k}={[lo, hi]} must be a range [low, high] with 0 < low <= high")
        lo, hi = params.resample_scale
        if not 1.0 <= lo <= hi:
            raise ConfigError(f"augmentation: resample_scale={[lo, hi]} must be a range [low, high] with 1 <= low <= high "
                              "(how many times fewer pixels per side)")
        bad = sorted(set(params.drop) - set(MODALITIES))
        if bad:
            raise ConfigError(f"augmentation: drop names unknown modality {bad}; use some of {MODALITIES}")
        return params

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def augment(rgb: np.ndarray, depth: np.ndarray, ir: np.ndarray, present: np.ndarray, rng: np.random.Generator,
            params: AugmentParams = AugmentParams()):
    """One sample's augmented (rgb, depth, ir, present); the inputs are not modified."""
    flip, scale, shift = draw_geometry(rng, params)
    if flip:
        rgb, depth, ir = rgb[..., ::-1], depth[..., ::-1], ir[..., ::-1]
    rgb, depth, ir = zoom_shift((rgb, depth, ir), scale, shift)
    return appearance(rgb, depth, ir, present, rng, params)


def draw_geometry(rng: np.random.Generator, params: AugmentParams = AugmentParams()):
    """Step 1's draws, in order: (flip, zoom scale, (dx, dy) shift as fractions of the side).

    augment() applies them to the model-size crop; streaming training (edge_fas.data.stream) zooms and
    shifts the source crop at its own resolution before the resize, then flips the model-size crop."""
    flip = bool(rng.random() < params.flip)
    return flip, float(rng.uniform(*params.zoom)), rng.uniform(-params.shift, params.shift, 2)


def appearance(rgb: np.ndarray, depth: np.ndarray, ir: np.ndarray, present: np.ndarray, rng: np.random.Generator,
               params: AugmentParams = AugmentParams()):
    """Steps 2-5 (colour gain and offset, photometric invariance, cutout, modality dropout) on model-size
    crops that have had their geometry step; returns (rgb, depth, ir, present), the inputs not modified."""
    p = params
    present = np.asarray(present, bool).copy()
    depth, ir = np.array(depth, np.float32), np.array(ir, np.float32)  # cutout writes in place
    rgb = rgb * np.float32(rng.uniform(*p.rgb_gain)) + np.float32(rng.uniform(-p.rgb_offset, p.rgb_offset))
    if p.resample > 0 and rng.random() < p.resample:  # drawn only when on: older configs keep their draws
        f = float(rng.uniform(*p.resample_scale))
        rgb, depth, ir = _resample(rgb, f), _resample(depth, f, holes=True), _resample(ir, f, holes=True)
    if p.ir_sensor > 0 and present[2] and rng.random() < p.ir_sensor:  # drawn only when on: older configs keep draws
        ir = _reimage_ir(ir, rng, p)
    if p.photometric > 0:
        if present[0] and rng.random() < p.photometric:
            rgb = _colour(rgb, rng, p)
        if present[1] and rng.random() < p.photometric:
            depth = _depth(depth, rng, p)
        if present[2] and rng.random() < p.photometric:
            ir = _ir(ir, rng, p)
    arrays = [rgb, depth, ir]
    if p.cutout > 0:
        s = rgb.shape[-1]
        for a in arrays:
            if rng.random() < p.cutout:
                h = int(s * rng.uniform(0.15, 0.35))
                y, x = rng.integers(0, s - h, 2)
                a[..., y:y + h, x:x + h] = 0.0
    for k, m in enumerate(MODALITIES):
        if present[k] and rng.random() < p.drop.get(m, 0.0) and present.sum() > 1:
            arrays[k][:] = 0.0
            present[k] = False
    return tuple(np.ascontiguousarray(a, np.float32) for a in arrays) + (present,)


def zoom_shift(arrays, scale: float, shift) -> list[np.ndarray]:
    """Scale about the centre and shift (fractions of the side) each C x H x W array the same way."""
    side = arrays[0].shape[-1]
    c = (side - 1) / 2.0
    m = np.array([[scale, 0.0, c - scale * c + shift[0] * side],
                  [0.0, scale, c - scale * c + shift[1] * side]], np.float32)
    out = []
    for a in arrays:
        hwc = np.ascontiguousarray(np.moveaxis(a, 0, -1))
        w = cv2.warpAffine(hwc, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append(np.moveaxis(w.reshape(side, side, -1), -1, 0).astype(np.float32))
    return out


def _resample(a: np.ndarray, factor: float, holes: bool = False) -> np.ndarray:
    """A C x H x W crop seen through `factor` times fewer pixels per side: area-averaged down, linearly back up. With
    holes (depth, IR: 0 = no measurement) only measured pixels are averaged, and the holes stay exactly where they
    were, neither spreading into nor filled from their neighbours. face_log IR also writes 0 where a pixel equals the
    face's median; such pixels keep their value too, as in _reimage_ir."""
    side = a.shape[-1]
    small = max(2, int(round(side / factor)))
    if small >= side:
        return np.asarray(a, np.float32)

    def through(x):
        down = cv2.resize(np.ascontiguousarray(np.moveaxis(x, 0, -1)), (small, small), interpolation=cv2.INTER_AREA)
        up = cv2.resize(down, (side, side), interpolation=cv2.INTER_LINEAR)
        return np.moveaxis(up.reshape(side, side, -1), -1, 0)

    a = np.asarray(a, np.float32)
    if not holes:
        return through(a).astype(np.float32)
    valid = (a != 0).astype(np.float32)
    weight = through(valid)
    out = through(a * valid) / np.maximum(weight, 1e-6)
    return np.where(valid > 0, out, 0.0).astype(np.float32)


def _blur_or_sharpen(a: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    sigma = rng.uniform(0.0, p.blur) * a.shape[-1] / 64.0
    if sigma < 0.25:
        return a
    soft = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in a])
    if rng.random() < 0.3:  # sharpening: an unsharp mask, as camera pipelines apply
        return a + np.float32(rng.uniform(0.3, 1.0)) * (a - soft)
    return soft


def _noise(a: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    return a + np.float32(rng.uniform(0.0, p.noise)) * rng.standard_normal(a.shape).astype(np.float32)


def _smooth_field(side: int, rng) -> np.ndarray:
    """A smooth random field of unit amplitude (a bilinear 3x3 grid of random values)."""
    grid = rng.uniform(-1.0, 1.0, (3, 3)).astype(np.float32)
    return cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)


def face_ellipse(side: int) -> np.ndarray:
    """Soft mask (1 inside) of where the face lies in a crop: the crop is crop_scale (1.4) x the face box's
    longer side, centred on it, so the face fills the middle ~70%; the edge is soft because the box and the
    geometry step move it by a few percent."""
    yy, xx = (np.mgrid[0:side, 0:side].astype(np.float32) + 0.5) / side - 0.5
    r = np.sqrt((xx / 0.32) ** 2 + (yy / 0.38) ** 2)
    return np.clip((1.15 - r) / 0.3, 0.0, 1.0).astype(np.float32)


def _colour(rgb: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    # normalised colour stays roughly zero-centred, unit-scale: apply cast and gamma around that centre
    rgb = rgb * (1.0 + rng.uniform(-p.rgb_cast, p.rgb_cast, (3, 1, 1))).astype(np.float32)
    g = np.float32(rng.uniform(*p.rgb_gamma))
    rgb = np.sign(rgb) * np.abs(rgb) ** g
    if rng.random() < p.rgb_gray:
        rgb = np.repeat(rgb.mean(0, keepdims=True), 3, 0)
    if p.rgb_surround > 0:  # drawn only when on, so configs without it keep their draws
        rgb = rgb + np.float32(rng.uniform(-p.rgb_surround, p.rgb_surround)) * (1.0 - face_ellipse(rgb.shape[-1]))[None]
    return _noise(_blur_or_sharpen(rgb, rng, p), rng, p).astype(np.float32)


def _ir(ir: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    valid = ir != 0  # registered IR is 0 where no depth pixel landed: keep those holes
    out = ir * np.float32(rng.uniform(*p.ir_contrast))
    out = out + np.float32(rng.uniform(0.0, p.ir_shading)) * _smooth_field(ir.shape[-1], rng)[None]
    if p.ir_surround > 0:  # drawn only when on, so configs without it keep their draws
        out = out + np.float32(rng.uniform(-p.ir_surround, p.ir_surround)) * (1.0 - face_ellipse(ir.shape[-1]))[None]
    out = _noise(_blur_or_sharpen(out, rng, p), rng, p)
    return np.where(valid, out, 0.0).astype(np.float32)


def _reimage_ir(ir: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    """A face_log IR crop seen through a drawn 8-bit imager: the face's median at level L (so a pixel's level is
    L * exp(x * ir_log_unit)), shot noise for a conversion gain of g electrons per unit plus read noise, rounded,
    clipped at 255, floored at 1 as the preprocessing floors it, then normalised about the central face again."""
    valid = ir != 0  # registration holes stay holes
    level = np.exp(rng.uniform(*np.log(p.ir_sensor_level)))
    gain = np.exp(rng.uniform(*np.log(p.ir_sensor_gain)))
    read = rng.uniform(*p.ir_sensor_read)
    signal = level * np.exp(ir.astype(np.float64) * p.ir_log_unit)
    noisy = signal + np.sqrt(signal / gain) * rng.standard_normal(ir.shape) + read * rng.standard_normal(ir.shape)
    logs = np.log(np.clip(np.round(noisy), 1.0, 255.0))
    return face_relative_log(logs[0], valid[0], p.ir_log_unit, p.ir_clip)[None]


def _depth(depth: np.ndarray, rng, p: AugmentParams) -> np.ndarray:
    valid = depth != 0
    out = _noise(_blur_or_sharpen(depth, rng, p) if rng.random() < 0.5 else depth, rng, p)
    if rng.random() < p.depth_holes:
        s = depth.shape[-1]
        blobs = cv2.GaussianBlur(rng.standard_normal((s, s)).astype(np.float32), (0, 0), s / 16.0)
        valid &= (blobs < np.quantile(blobs, 1.0 - rng.uniform(0.03, 0.2)))[None]
    return np.where(valid, out, 0.0).astype(np.float32)
