"""Randomisation ranges of the synthetic rig's randomised family: every factor a named, seeded parameter.

The named domains (edge_fas.sim.domains) fix the sensor, light and materials per domain, so a model
trained on them can learn the renderer's particular look. The randomised family draws every factor
below per sample (per identity or per camera where the factor belongs to one), from a *range set*:

- `rand`: the training ranges.
- `rand_test`: a second held-out set, for reporting only (never for training or for choosing a checkpoint,
  calibration or threshold): outside both `rand` and `rand_heldout` on cameras, lenses, emitters, sensor
  responses and some materials, with only procedural identities.
- `rand_heldout`: a held-out range set for validation and test. Its camera, lens, emitter, depth-noise,
  IR and colour-response ranges, its photo identity and some material ranges lie outside the training
  ranges (RangeSet.disjoint_from lists them); the rest (species, pose, skin) are shared, so a score on
  it measures how far a model carries to a rig it never saw, not a different task.

A range set maps factor name -> value:
- (low, high): drawn uniformly in [low, high];
- [a, b, ...]: one of the choices, uniformly;
- a number: a constant (probabilities such as `print.cutout_prob` are constants).

Custom sets (a training config's `data.randomization`) start from a base set and override factors by
name; an unknown name or a malformed value is an error that names it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from edge_fas.errors import ConfigError

FAMILY = "rand"  # domain names of the randomised family start with this

# name -> (what it is, the training range). Units are in the name where they are physical.
FACTORS: dict[str, tuple[str, object]] = {
    # identity (drawn per identity: index // IDENTITY_BLOCK)
    "identity.source": ("which face texture: a public-domain photo or a procedural face", ["hopper", "procedural"]),
    "identity.repaint": ("procedural skin painted over a photo face (0 = the photo's own skin)", (0.0, 0.7)),
    "identity.skin_tone": ("skin lightness, 0 = darkest, 1 = lightest", (0.0, 1.0)),
    "identity.skin_hue": ("skin hue shift towards red (+) or yellow (-)", (-1.0, 1.0)),
    "identity.skin_ir": ("skin reflectance at 850 nm", (0.45, 0.75)),
    "identity.hair_ir": ("hair reflectance at 850 nm", (0.1, 0.55)),
    "identity.fabric_ir": ("clothing reflectance at 850 nm (dyes are often transparent in near-IR)", (0.15, 0.9)),
    "identity.glasses_prob": ("probability of glasses (lens glare, depth drop-outs)", 0.25),
    "identity.beard_prob": ("probability of a beard or stubble", 0.25),
    # head shape (per identity)
    "head.dome_m": ("height of the face ellipsoid", (0.045, 0.07)),
    "head.nose_m": ("nose tip above the face surface", (0.014, 0.032)),
    "head.nose_width_px": ("nose width (canonical photo pixels, 0.83 mm each)", (10.0, 18.0)),
    "head.nose_bridge_px": ("nose ridge length", (35.0, 55.0)),
    "head.socket_m": ("eye socket depth", (0.005, 0.016)),
    "head.lips_m": ("lip relief", (0.003, 0.009)),
    "head.chin_m": ("chin relief", (0.003, 0.010)),
    "head.brow_m": ("brow ridge", (0.0, 0.006)),
    "head.cheek_m": ("cheekbones", (0.0, 0.006)),
    "head.width": ("face width scale", (0.9, 1.1)),
    "head.height": ("face height scale", (0.93, 1.07)),
    "head.smile": ("smile", (0.0, 1.0)),
    "head.brows": ("raised brows", (0.0, 1.0)),
    # pose (per sample)
    "pose.distance_m": ("subject (or medium) distance from the colour camera", (0.35, 1.1)),
    "pose.offset": ("lateral offset as a fraction of the distance", (0.0, 0.16)),
    "pose.yaw_deg": ("head or medium yaw", (-30.0, 30.0)),
    "pose.pitch_deg": ("pitch", (-18.0, 18.0)),
    "pose.roll_deg": ("roll", (-12.0, 12.0)),
    "pose.sway": ("how much the person or the attacker's hand moves", (0.2, 1.0)),
    # light (per sample)
    "light.azimuth_deg": ("key light direction", (-60.0, 60.0)),
    "light.elevation_deg": ("key light elevation", (-20.0, 50.0)),
    "light.ambient": ("ambient fraction of the visible light", (0.15, 0.7)),
    "light.intensity": ("visible light level", (0.6, 1.4)),
    "light.warmth": ("colour temperature: + warm (red), - cool (blue)", (-0.2, 0.2)),
    "light.ir_ambient": ("ambient near-IR (sunlight) relative to the emitter at 0.5 m", (0.0, 0.4)),
    # camera (per camera: index // CAMERA_BLOCK)
    "camera.color_hfov_deg": ("colour camera horizontal field of view", (50.0, 75.0)),
    "camera.depth_hfov_deg": ("depth/IR camera horizontal field of view", (58.0, 90.0)),
    "camera.color_k1": ("colour lens radial distortion k1 (Brown-Conrady)", (-0.15, 0.05)),
    "camera.color_k2": ("colour lens radial distortion k2", (-0.05, 0.05)),
    "camera.depth_k1": ("depth/IR lens radial distortion k1", (-0.03, 0.03)),
    "camera.baseline_m": ("colour-to-depth baseline", (0.010, 0.050)),
    "camera.stereo_baseline_m": ("baseline between the stereo imagers, or projector and imager", (0.04, 0.095)),
    "camera.rotation_deg": ("colour-to-depth rotation, each axis", (0.0, 0.5)),
    "camera.principal_px": ("principal point off the image centre (pixels at 640 wide)", (0.0, 10.0)),
    "camera.color_sharpness": ("colour optics/sensor resolution (1 = native; lower renders smaller and upsamples)",
                               (0.45, 1.0)),
    "camera.depth_resolution": ("depth sensor resolution relative to the stream", (0.5, 1.0)),
    # emitter (per camera)
    "emitter.pattern": ("near-IR illumination: active-stereo dots, structured light, flood (ToF-like) or none",
                        ["dots", "structured", "flood", "off"]),
    "emitter.density": ("fraction of pixels a dot lands on", (0.04, 0.12)),
    "emitter.dot_px": ("dot blur (pixels)", (0.5, 1.1)),
    "emitter.contrast": ("share of the emitter's light in the pattern", (0.2, 0.6)),
    "emitter.power": ("emitter power", (0.6, 1.4)),
    # depth (per camera)
    "depth.disparity_noise_px": ("stereo matching noise (pixels of disparity)", (0.03, 0.12)),
    "depth.tof_noise_mm_per_m": ("time-of-flight noise (flood emitter)", (2.0, 8.0)),
    "depth.subpixel": ("disparity quantisation steps per pixel", [4, 8, 16, 32]),
    "depth.blotch": ("share of low-frequency (correlated) depth noise", (0.2, 1.0)),
    "depth.hole_rate": ("random drop-outs", (0.0, 0.015)),
    "depth.edge_px": ("width of the invalid band at depth edges", (1.0, 4.0)),
    "depth.flying": ("share of edge pixels kept as flying pixels (between foreground and background)", (0.0, 0.8)),
    "depth.smoothing_px": ("the depth camera's spatial filter", (0.0, 1.5)),
    "depth.min_m": ("nearest measurable depth", (0.15, 0.3)),
    "depth.max_m": ("farthest measurable depth", (2.5, 6.0)),
    "depth.dark_limit": ("IR level (0-255) below which matching fails", (8.0, 30.0)),
    # IR imager (per camera)
    "ir.gain": ("IR imager gain", (0.6, 1.5)),
    "ir.noise": ("IR read noise (8-bit units)", (1.0, 5.0)),
    "ir.gamma": ("IR response curve", (0.8, 1.25)),
    "ir.vignette": ("IR falloff to the corners", (0.0, 0.4)),
    "ir.scatter_px": ("blur of a projected dot in skin at 0.5 m (subsurface scattering)", (0.8, 2.5)),
    # colour imager (per sample, the lens and sensor per camera)
    "color.exposure": ("exposure", (0.6, 1.3)),
    "color.noise": ("read noise at unit gain (8-bit units)", (1.0, 6.0)),
    "color.gamma": ("response curve", (0.8, 1.25)),
    "color.saturation": ("colour saturation", (0.6, 1.25)),
    "color.vignette": ("falloff to the corners", (0.0, 0.4)),
    "color.defocus_px": ("defocus blur (sigma, pixels at 640 wide)", (0.0, 1.3)),
    "color.motion_blur_px": ("motion blur per unit of head speed", (0.0, 8.0)),
    "color.rolling_shutter_px": ("rolling-shutter skew per unit of head speed, top to bottom row", (0.0, 6.0)),
    "color.jpeg_prob": ("probability the colour stream is JPEG-compressed", 0.6),
    "color.jpeg_quality": ("JPEG quality", (35.0, 95.0)),
    # background (per sample)
    "background.behind_m": ("wall distance behind the subject or medium", (0.3, 3.0)),
    "background.tilt_deg": ("wall tilt", (-30.0, 30.0)),
    "background.kind": ("wall texture", ["noise", "stripes", "gradient", "tiles", "blobs"]),
    "background.ir": ("wall reflectance at 850 nm", (0.1, 0.8)),
    # attack materials (per sample)
    "print.paper_white": ("paper white level", (0.8, 0.97)),
    "print.paper_ir": ("paper reflectance at 850 nm", (0.6, 0.92)),
    "print.ink_ir_dark": ("near-IR absorption of the darkest ink (carbon black)", (0.0, 0.5)),
    "print.halftone": ("strength of the visible halftone screen (real screens are finer than the texture)",
                       (0.0, 0.6)),
    "print.halftone_period": ("halftone period (canonical pixels)", (2.0, 5.0)),
    "print.desaturate": ("printer desaturation", (0.05, 0.4)),
    "print.margin_px": ("white margin around the photo", (0.0, 60.0)),
    "print.bend": ("curvature of a bent sheet (1/m; + towards the camera)", (-5.0, 5.0)),
    "print.flat_prob": ("probability the sheet is flat", 0.4),
    "print.gloss": ("paper gloss", (0.0, 0.25)),
    "print.ink_black": ("reflectance of the densest ink (photo paper ~0.01, office paper ~0.12); the photo's "
                        "white is the paper's", (0.01, 0.12)),
    "print.lightness": ("gain on the photo before printing (the printer's or attacker's brightness setting)",
                        (0.75, 1.1)),
    "replay.ir": ("screen reflectance at 850 nm", (0.01, 0.12)),
    "replay.gamma": ("display gamma", (1.0, 1.6)),
    "replay.brightness": ("display brightness", (0.55, 1.3)),
    "replay.scale": ("the face on screen relative to life size", (0.5, 1.0)),
    "replay.bezel_px": ("bezel width (canonical pixels)", (0.0, 60.0)),
    "replay.bezel_gray": ("bezel colour", (0.02, 0.4)),
    "replay.moire": ("sub-pixel stripe strength (moire)", (0.0, 0.35)),
    "replay.glare": ("a lamp's reflection on the glass", (0.0, 0.3)),
    "rigid.ir": ("resin or plastic reflectance at 850 nm", (0.55, 0.95)),
    "rigid.smooth_px": ("how much detail the mould loses", (5.0, 13.0)),
    "rigid.relief": ("mask relief relative to the face's", (0.5, 0.9)),
    "rigid.standoff_m": ("how far the mask stands off the face", (0.006, 0.02)),
    "rigid.gloss": ("paint gloss", (0.05, 0.4)),
    "rigid.paint_blur_px": ("how much of the face's detail the paint keeps (blur, canonical pixels)", (0.8, 3.0)),
    "rigid.paint_contrast": ("paint contrast", (0.9, 1.3)),
    "rigid.paint_tint": ("largest per-channel colour offset of the paint", (0.0, 0.08)),
    "rigid.paint_lightness": ("the paint's lightness relative to the wearer's face", (0.75, 1.1)),
    "silicone.ir_ratio": ("silicone reflectance at 850 nm relative to the wearer's skin", (0.72, 0.92)),
    "silicone.ir_texture": ("how much of skin's near-IR texture the silicone keeps", (0.15, 0.5)),
    "silicone.thickness_m": ("silicone thickness", (0.003, 0.009)),
    "silicone.smooth_px": ("detail the silicone softens", (2.0, 6.0)),
    "silicone.seam": ("visibility of the glued edge", (0.1, 0.5)),
    "silicone.gloss": ("sheen", (0.06, 0.25)),
    "silicone.scatter": ("silicone's near-IR subsurface scattering relative to skin's", (0.5, 0.9)),
    "silicone.desaturate": ("how much colour the pigmented silicone loses", (0.05, 0.35)),
    "silicone.tint": ("largest per-channel colour offset of the pigment", (0.0, 0.06)),
    "silicone.lightness": ("the pigment's lightness relative to the wearer's skin", (0.8, 1.1)),
    "mask.hair_over": ("how much of the wearer's own hair lies over a worn mask's forehead and edges (rigid, paper, "
                       "silicone): 0 the mask covers it, 1 all of it in front", (0.0, 1.0)),
    "hands.prob": ("probability an attacker's hands hold a print, screen or paper mask in view", 0.6),
    "hands.count": ("hands holding the medium", [1, 2]),
}

IDENTITY_BLOCK = 4  # consecutive sample indices share an identity (its head is built once)
CAMERA_BLOCK = 16  # ... and a camera (its registration tables are built once)

# the held-out set: outside the training ranges on these factors, the same elsewhere
HELDOUT_OVERRIDES: dict[str, object] = {
    "identity.source": ["astronaut", "procedural"],
    "camera.color_hfov_deg": (76.0, 88.0),
    "camera.color_k1": (-0.3, -0.16),
    "camera.baseline_m": (0.052, 0.07),
    "camera.depth_resolution": (0.35, 0.49),
    "emitter.density": (0.13, 0.2),
    "emitter.dot_px": (1.15, 1.5),
    "depth.disparity_noise_px": (0.125, 0.18),
    "depth.tof_noise_mm_per_m": (8.5, 12.0),
    "depth.smoothing_px": (1.6, 2.5),
    "ir.gain": (1.55, 1.9),
    "ir.gamma": (1.3, 1.5),
    "color.gamma": (1.3, 1.5),
    "color.jpeg_quality": (20.0, 34.0),
    "light.ir_ambient": (0.42, 0.6),
    "background.kind": ["checker", "rings"],
    "print.halftone_period": (5.2, 7.0),
    "replay.ir": (0.13, 0.2),
    "rigid.ir": (0.45, 0.54),
    "silicone.ir_ratio": (0.62, 0.71),
}


# the test set: outside BOTH the training ranges and rand_heldout on these factors (mostly the other side
# of the training range from rand_heldout), for reporting only: a model is never trained or selected on it,
# so numbers on it are not biased by choosing the checkpoint, the calibration or the operating point
TEST_OVERRIDES: dict[str, object] = {
    "identity.source": ["procedural"],
    "camera.color_hfov_deg": (40.0, 49.0),
    "camera.color_k1": (0.06, 0.12),
    "camera.baseline_m": (0.004, 0.009),
    "emitter.density": (0.02, 0.035),
    "emitter.dot_px": (0.3, 0.45),
    "depth.disparity_noise_px": (0.01, 0.025),
    "ir.gain": (0.4, 0.55),
    "ir.gamma": (0.65, 0.78),
    "color.gamma": (0.65, 0.78),
    "print.halftone_period": (1.2, 1.9),
    "replay.ir": (0.0, 0.009),
    "rigid.ir": (0.96, 1.0),
    "silicone.ir_ratio": (0.93, 0.97),
}


@dataclass(frozen=True)
class RangeSet:
    """A named set of factor ranges (see the module docstring)."""

    name: str
    values: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        for k, v in self.values.items():
            _check_value(self.name, k, v)
        missing = sorted(set(FACTORS) - set(self.values))
        if missing:
            raise ConfigError(f"randomisation range set {self.name!r} misses factor(s) {missing}")

    def with_overrides(self, name: str, overrides: dict, description: str = "") -> "RangeSet":
        unknown = sorted(set(overrides) - set(FACTORS))
        if unknown:
            raise ConfigError(f"randomisation range set {name!r}: unknown factor(s) {unknown}; known factors are "
                              f"listed in edge_fas/sim/ranges.py (e.g. {', '.join(list(FACTORS)[:4])})")
        values = dict(self.values)
        for k, v in overrides.items():
            values[k] = list(v) if isinstance(v, list) else (tuple(v) if isinstance(v, tuple) else v)
        return RangeSet(name, values, description or f"{self.name} with {', '.join(sorted(overrides))} changed")

    def draw(self, rng: np.random.Generator, factor: str):
        v = self.values[factor]
        if isinstance(v, tuple):
            return float(rng.uniform(v[0], v[1]))
        if isinstance(v, list):
            return v[int(rng.integers(len(v)))]
        return v

    def disjoint_from(self, other: "RangeSet") -> list[str]:
        """Factors whose values here can never be drawn by `other` (intervals or choices that do not meet)."""
        out = []
        for k in FACTORS:
            a, b = self.values[k], other.values[k]
            if isinstance(a, tuple) and isinstance(b, tuple):
                if a[1] < b[0] or b[1] < a[0]:
                    out.append(k)
            elif isinstance(a, list) and isinstance(b, list):
                if not set(map(str, a)) & set(map(str, b)):
                    out.append(k)
        return out

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.values.items()}

    def key(self) -> str:
        """A hash of the values (caches key on it)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def __reduce__(self):
        """Pickled as its differences from the closest built-in set: every streamed sample of a randomised
        domain carries its range set (edge_fas.data.synthetic.SyntheticSample), ~0.1 KB instead of ~4 KB."""
        reduced = self.__dict__.get("_reduced")  # worked out once: an index pickles every sample
        if reduced is None:
            base = min(RANGE_SETS.values(), key=lambda b: len(self._changed_from(b)))
            reduced = (_rebuild, (self.name, base.name, self._changed_from(base), self.description))
            object.__setattr__(self, "_reduced", reduced)
        return reduced

    def _changed_from(self, other: "RangeSet") -> dict:
        same = lambda a, b: type(a) is type(b) and json.dumps(a) == json.dumps(b)  # noqa: E731  (1 vs 1.0 differ)
        return {k: v for k, v in self.values.items() if not same(v, other.values.get(k))}


def _rebuild(name: str, base: str, changed: dict, description: str) -> RangeSet:
    b = RANGE_SETS[base]
    if name == b.name and not changed:
        return b
    return RangeSet(name, {**b.values, **changed}, description)


def _check_value(set_name: str, k: str, v) -> None:
    where = f"randomisation range set {set_name!r}, factor {k!r}"
    if k not in FACTORS:
        raise ConfigError(f"{where}: unknown factor")
    if isinstance(v, tuple):
        if len(v) != 2 or not all(isinstance(x, (int, float)) and np.isfinite(x) for x in v) or v[0] > v[1]:
            raise ConfigError(f"{where}: a range must be [low, high] with finite low <= high, got {list(v)}")
    elif isinstance(v, list):
        if not v:
            raise ConfigError(f"{where}: a list of choices must not be empty")
        kind = FACTORS[k][1]
        if isinstance(kind, list):
            allowed = set(map(str, kind)) | set(map(str, HELDOUT_OVERRIDES.get(k, [])))
            bad = [c for c in v if str(c) not in allowed]
            if bad:
                raise ConfigError(f"{where}: unknown choice(s) {bad}; expected some of {sorted(allowed)}")
    elif not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
        raise ConfigError(f"{where}: expected [low, high], a list of choices or a number, got {v!r}")


def _train_values() -> dict:
    return {k: (list(v) if isinstance(v, list) else v) for k, (_, v) in FACTORS.items()}


RANGE_SETS: dict[str, RangeSet] = {}
RANGE_SETS["rand"] = RangeSet("rand", _train_values(), "the randomised family's training ranges")
RANGE_SETS["rand_heldout"] = RANGE_SETS["rand"].with_overrides(
    "rand_heldout", HELDOUT_OVERRIDES, "held-out ranges: cameras, lenses, emitters, sensor responses, a photo "
    "identity and materials the training ranges never draw")
RANGE_SETS["rand_test"] = RANGE_SETS["rand"].with_overrides(
    "rand_test", TEST_OVERRIDES, "test ranges: cameras, lenses, emitters, sensor responses and materials that "
    "neither the training ranges nor rand_heldout draw, and only procedural (never photographed) identities")


def is_randomized(domain: str) -> bool:
    return isinstance(domain, str) and (domain == FAMILY or domain.startswith(FAMILY + "_"))


def parse_custom(spec: dict | None) -> dict[str, RangeSet]:
    """Range sets from a config mapping {name: {base: rand | rand_heldout | another, factor: value}}.

    YAML lists of two numbers are ranges unless the factor takes choices (then they are choices)."""
    out: dict[str, RangeSet] = {}
    for name, body in (spec or {}).items():
        if not is_randomized(name):
            raise ConfigError(f"data.randomization: range set name {name!r} must start with {FAMILY!r}_ "
                              f"(e.g. {FAMILY}_far); it is used as a domain name")
        if name in RANGE_SETS:
            raise ConfigError(f"data.randomization: {name!r} is a built-in range set; choose another name")
        if not isinstance(body, dict):
            raise ConfigError(f"data.randomization.{name}: expected a mapping of factor: value (and base:)")
        body = dict(body)
        base_name = body.pop("base", "rand")
        base = out.get(base_name) or RANGE_SETS.get(base_name)
        if base is None:
            raise ConfigError(f"data.randomization.{name}: base {base_name!r} is unknown; use rand, rand_heldout or a "
                              "set defined before it")
        overrides = {}
        for k, v in body.items():
            if k not in FACTORS:
                raise ConfigError(f"data.randomization.{name}: unknown factor {k!r}")
            choices = isinstance(FACTORS[k][1], list)
            overrides[k] = list(v) if (isinstance(v, (list, tuple)) and choices) else \
                (tuple(v) if isinstance(v, (list, tuple)) else v)
        out[name] = base.with_overrides(name, overrides)
    return out


def get_ranges(domain: str, custom: dict[str, RangeSet] | None = None) -> RangeSet:
    if custom and domain in custom:
        return custom[domain]
    try:
        return RANGE_SETS[domain]
    except KeyError:
        raise ConfigError(f"randomised domain {domain!r} is unknown; built in: {', '.join(RANGE_SETS)} "
                          "(define more under data.randomization)") from None
