"""Identities of the randomised family: face textures from more than one source on heads of many shapes.

Every identity lives on the canonical photo grid of edge_fas.sim.face_photo (the Grace Hopper photo's
frame: landmarks at LANDMARKS, 0.83 mm per pixel), so the head relief, the species builders and the
landmark truth work for all of them. Texture sources (licences: edge_fas/assets/faces/README.md):

- `hopper`: matplotlib's public-domain portrait of Grace Hopper (installed with matplotlib).
- `astronaut`: NASA's public-domain portrait of Eileen Collins, as shipped in scikit-image's wheel
  (`skimage/data/astronaut.png`), bundled as `edge_fas/assets/faces/astronaut.jpg`; aligned onto the
  canonical landmarks by the affine map of its BlazeFace keypoints.
- `procedural`: a face painted from drawn parameters: skin colour and texture, eyes and iris colour,
  brows, lips, hair, beard, glasses, clothes, background.

A photo identity may also be repainted (`identity.repaint`): its skin moved towards the drawn skin
colour while its features stay. Near-IR reflectance is drawn per material (skin, hair, fabric), not
derived from the visible colour: dyes that look black can be bright at 850 nm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from edge_fas.errors import EdgeFasError
from edge_fas.sim.face_photo import (FACE_AXES, LANDMARKS, PHOTO_ROWS, HeadShape, PersonLayers, build_person,
                                     detect_skin, face_coords, load_photo, to_face_frame)
from edge_fas.sim.ranges import RangeSet

PHOTO_SHAPE = (PHOTO_ROWS, 512)
PHOTO_SOURCES = ("hopper", "astronaut")

# BlazeFace keypoints (x, y) on astronaut.jpg (512 x 512), measured once (tests/test_sim_random.py checks them)
ASTRONAUT_LANDMARKS = {"eye_right": (201.5, 104.9), "eye_left": (245.8, 109.1), "nose": (220.4, 127.3),
                       "mouth": (219.8, 148.6)}


@functools.lru_cache(maxsize=1)
def astronaut_photo() -> np.ndarray:
    """The astronaut portrait warped onto the canonical grid, float32 RGB in [0, 1]."""
    ref = resources.files("edge_fas.assets.faces") / "astronaut.jpg"
    data = np.frombuffer(ref.read_bytes(), np.uint8) if ref.is_file() else np.zeros(0, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise EdgeFasError("edge_fas/assets/faces/astronaut.jpg is missing or unreadable; reinstall edge-fas")
    names = ("eye_right", "eye_left", "nose", "mouth")
    src = np.array([ASTRONAUT_LANDMARKS[n] for n in names], np.float32)
    dst = np.array([LANDMARKS[n] for n in names], np.float32)
    m, _ = cv2.estimateAffine2D(src, dst, method=cv2.LMEDS)
    warped = cv2.warpAffine(image, m, (PHOTO_SHAPE[1], PHOTO_SHAPE[0]), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT)
    return cv2.cvtColor(warped, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def photo(source: str) -> np.ndarray:
    if source == "hopper":
        return load_photo()
    if source == "astronaut":
        return astronaut_photo()
    raise ValueError(f"unknown photo source {source!r}; expected one of {PHOTO_SOURCES}")


@dataclass(frozen=True)
class IdentityParams:
    """One identity's draws (edge_fas.sim.ranges, group `identity.*` and `head.*`)."""

    source: str
    seed: int  # the procedural texture's own seed
    repaint: float
    skin_tone: float
    skin_hue: float
    skin_ir: float
    hair_ir: float
    fabric_ir: float
    glasses: bool
    beard: bool
    shape: HeadShape
    smile: float
    brows: float
    width: float
    height: float

    @classmethod
    def draw(cls, ranges: RangeSet, rng: np.random.Generator) -> "IdentityParams":
        d = lambda k: ranges.draw(rng, k)  # noqa: E731
        shape = HeadShape(dome_m=d("head.dome_m"), nose_m=d("head.nose_m"), nose_width_px=d("head.nose_width_px"),
                          nose_bridge_px=d("head.nose_bridge_px"), socket_m=d("head.socket_m"),
                          lips_m=d("head.lips_m"), chin_m=d("head.chin_m"), brow_m=d("head.brow_m"),
                          cheek_m=d("head.cheek_m"))
        return cls(source=str(d("identity.source")), seed=int(rng.integers(2 ** 31)), repaint=d("identity.repaint"),
                   skin_tone=d("identity.skin_tone"), skin_hue=d("identity.skin_hue"), skin_ir=d("identity.skin_ir"),
                   hair_ir=d("identity.hair_ir"), fabric_ir=d("identity.fabric_ir"),
                   glasses=bool(rng.random() < d("identity.glasses_prob")),
                   beard=bool(rng.random() < d("identity.beard_prob")), shape=shape, smile=d("head.smile"),
                   brows=d("head.brows"), width=d("head.width"), height=d("head.height"))


def skin_color(tone: float, hue: float) -> np.ndarray:
    """Linear-ish RGB albedo of skin: tone 0 (darkest) .. 1 (lightest); hue + redder, - more yellow."""
    dark, light = np.array([0.30, 0.19, 0.13]), np.array([0.93, 0.76, 0.65])
    c = dark + (light - dark) * tone
    return np.clip(c + np.array([0.03, -0.005, -0.025]) * hue, 0.02, 1.0).astype(np.float32)


HAIR_COLORS = np.array([[0.05, 0.04, 0.04], [0.18, 0.11, 0.07], [0.35, 0.22, 0.12], [0.65, 0.5, 0.3],
                        [0.55, 0.25, 0.12], [0.6, 0.6, 0.6], [0.85, 0.85, 0.85]], np.float32)


def _noise(rng, shape, sigma) -> np.ndarray:
    n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma)
    return n / (n.std() + 1e-6)


def background_texture(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    """A wall or a photo's background: H x W x 3 float32 in [0, 1]."""
    h, w = shape
    c1, c2 = rng.uniform(0.1, 0.9, 3).astype(np.float32), rng.uniform(0.1, 0.9, 3).astype(np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "stripes":
        t = np.radians(rng.uniform(0, 180))
        period = rng.uniform(8, 60)
        mix = (np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / period) > 0).astype(np.float32)
    elif kind == "gradient":
        t = np.radians(rng.uniform(0, 360))
        g = x * np.cos(t) + y * np.sin(t)
        mix = (g - g.min()) / (np.ptp(g) + 1e-6)
    elif kind == "tiles":
        s = rng.uniform(12, 60)
        mix = ((np.floor(x / s) + np.floor(y / s)) % 2).astype(np.float32) * 0.3 + 0.35
        mix += 0.3 * ((x % s < 2) | (y % s < 2))
    elif kind == "blobs":
        mix = np.clip(_noise(rng, (h, w), rng.uniform(6, 30)) * 0.5 + 0.5, 0, 1)
    elif kind == "checker":
        s = rng.uniform(10, 40)
        mix = ((np.floor(x / s) + np.floor(y / s)) % 2).astype(np.float32)
    elif kind == "rings":
        r = np.hypot(x - rng.uniform(0, w), y - rng.uniform(0, h))
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * r / rng.uniform(10, 50))
    else:  # noise
        mix = np.clip(_noise(rng, (h, w), rng.uniform(15, 40)) * 0.25 + 0.5, 0, 1)
    out = c1 + (c2 - c1) * mix[..., None]
    out *= (1.0 + 0.04 * _noise(rng, (h, w), 1.5))[..., None]
    return np.clip(out, 0, 1).astype(np.float32)


def _regions(shape):
    """Masks on the canonical grid: face skin, hair, neck and ears, torso (float32 0..1)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = face_coords((h, w))
    a, b = FACE_AXES
    face = ((fx / a) ** 2 + (fy / b) ** 2 <= 1.0).astype(np.float32)
    skull = (((x - 265.0) / 118.0) ** 2 + ((y - 215.0) / 140.0) ** 2 <= 1.0).astype(np.float32)
    cap = (((x - 262.0) / 118.0) ** 2 + ((y - 92.0) / 72.0) ** 2 <= 1.0).astype(np.float32)
    neck = ((np.abs(x - 267.0) < 60.0) & (y > 280.0) & (y < 360.0)).astype(np.float32)
    body = np.zeros((h, w), np.uint8)
    cv2.fillPoly(body, [np.array([[200, 330], [335, 330], [420, 368], [505, 440], [512, 600], [10, 600], [40, 420],
                                  [120, 360]], np.int32)], 1)
    return fx, fy, face, np.maximum(skull, cap), neck, body.astype(np.float32)


def _ellipse(canvas, center, axes, angle, value, thickness=-1):
    cv2.ellipse(canvas, (int(round(center[0] * 4)), int(round(center[1] * 4))),
                (max(1, int(round(axes[0] * 4))), max(1, int(round(axes[1] * 4)))), angle, 0, 360, value, thickness,
                cv2.LINE_AA, 2)


def _paint_features(color, p: IdentityParams, rng, hair_rgb, skin_rgb, features: bool):
    """Eyes, brows, nostrils, lips (procedural faces only), beard and glasses (any face), in place."""
    roll = -6.5
    eyes = [LANDMARKS["eye_right"], LANDMARKS["eye_left"]]
    layer = np.zeros(color.shape[:2], np.float32)
    if features:
        iris = rng.choice(np.array([[0.25, 0.15, 0.08], [0.35, 0.25, 0.12], [0.3, 0.45, 0.55], [0.35, 0.45, 0.3]],
                                   np.float32))
        eye_w, eye_h = rng.uniform(13, 17), rng.uniform(5.5, 8)
        for ex, ey in eyes:
            m = np.zeros_like(layer)
            _ellipse(m, (ex, ey), (eye_w, eye_h), roll, 1.0)
            color[:] = color * (1 - m[..., None]) + np.array([0.85, 0.82, 0.78], np.float32) * m[..., None]
            m[:] = 0
            _ellipse(m, (ex, ey), (eye_h * 0.95, eye_h * 0.95), 0, 1.0)
            color[:] = color * (1 - m[..., None]) + iris * m[..., None]
            m[:] = 0
            _ellipse(m, (ex, ey), (2.6, 2.6), 0, 1.0)
            color[:] = color * (1 - m[..., None]) + 0.03 * m[..., None]
            m[:] = 0  # upper lid and lashes
            cv2.ellipse(m, (int(ex * 4), int(ey * 4)), (int(eye_w * 4), int(eye_h * 4)), roll, 190, 350, 1.0,
                        int(rng.uniform(4, 9)), cv2.LINE_AA, 2)
            color[:] = color * (1 - 0.8 * m[..., None]) + 0.05 * m[..., None]
            # brow
            m[:] = 0
            cv2.ellipse(m, (int(ex * 4), int((ey - rng.uniform(16, 24)) * 4)), (int(rng.uniform(18, 24) * 4), 40),
                        roll, 200, 340, 1.0, int(rng.uniform(14, 32)), cv2.LINE_AA, 2)
            m = cv2.GaussianBlur(m, (0, 0), 1.2)
            color[:] = color * (1 - 0.85 * m[..., None]) + hair_rgb * 0.8 * 0.85 * m[..., None]
        nx, ny = LANDMARKS["nose"]
        m = np.zeros_like(layer)
        for side in (-1, 1):
            _ellipse(m, (nx + side * rng.uniform(6, 9), ny + 8), (3.5, 2.2), roll, 1.0)
        m = cv2.GaussianBlur(m, (0, 0), 1.0)
        color[:] = color * (1 - 0.6 * m[..., None])
        mx, my = LANDMARKS["mouth"]
        m = np.zeros_like(layer)
        lip_w, lip_h = rng.uniform(20, 30), rng.uniform(5, 9)
        _ellipse(m, (mx, my), (lip_w, lip_h), roll, 1.0)
        m = cv2.GaussianBlur(m, (0, 0), 1.5)
        lip = skin_rgb * np.array([0.85, 0.55, 0.55], np.float32) * rng.uniform(0.8, 1.05)
        color[:] = color * (1 - m[..., None]) + lip * m[..., None]
        m[:] = 0
        cv2.ellipse(m, (int(mx * 4), int(my * 4)), (int(lip_w * 4), 4), roll, 0, 180, 1.0, 6, cv2.LINE_AA, 2)
        color[:] = color * (1 - 0.5 * m[..., None])
    if p.beard:
        fx, fy = face_coords(color.shape[:2])
        mx, my = to_face_frame(LANDMARKS["mouth"])
        region = np.clip(1.0 - (((fx - mx) / 95.0) ** 2 + ((fy - my - 10.0) / 55.0) ** 2), 0, 1)
        region *= (fy > my - 22.0) & ((np.abs(fy - my) > 9.0) | (np.abs(fx - mx) > 30.0))
        density = rng.uniform(0.25, 0.9) * np.clip(0.6 + 0.4 * _noise(rng, layer.shape, 1.0), 0, 1)
        m = cv2.GaussianBlur((region * density).astype(np.float32), (0, 0), 2.0)
        color[:] = color * (1 - m[..., None]) + hair_rgb * m[..., None]
    if p.glasses:
        m = np.zeros_like(layer)
        frame = rng.uniform(0.02, 0.5, 3).astype(np.float32)
        t = int(rng.uniform(6, 14))
        for ex, ey in eyes:
            cv2.ellipse(m, (int(ex * 4), int(ey * 4)), (int(30 * 4), int(rng.uniform(18, 24) * 4)), roll, 0, 360, 1.0,
                        t, cv2.LINE_AA, 2)
        (x0, y0), (x1, y1) = eyes
        cv2.line(m, (int((x0 + 28) * 4), int(y0 * 4)), (int((x1 - 28) * 4), int(y1 * 4)), 1.0, t, cv2.LINE_AA, 2)
        color[:] = color * (1 - m[..., None]) + frame * m[..., None]


def _colour_transfer(color, mask, target):
    """Move the masked region's mean colour to `target`, keeping its shading and features (gains per channel)."""
    w = mask[..., None]
    mean = (color * w).sum((0, 1)) / max(float(mask.sum()), 1.0)
    gains = target / np.maximum(mean, 0.02)
    return np.clip(color * (1 - w) + color * gains * w, 0, 1)


@functools.lru_cache(maxsize=8)
def identity_layers(p: IdentityParams) -> PersonLayers:
    """The PersonLayers of identity `p` (cached: consecutive samples share identities)."""
    rng = np.random.default_rng(p.seed)
    fx, fy, face, hair_region, neck, body = _regions(PHOTO_SHAPE)
    skin_rgb = skin_color(p.skin_tone, p.skin_hue)
    hair_rgb = HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))] * rng.uniform(0.8, 1.2)
    cloth_rgb = rng.uniform(0.05, 0.9, 3).astype(np.float32)
    a, b = FACE_AXES
    # the hairline: where the hair region ends above the brow
    hairline = -b * rng.uniform(0.55, 0.85)
    hair = np.clip(hair_region * (1.0 - face) + face * (fy < hairline), 0, 1)
    hair *= (rng.random() > 0.08)  # a few are bald
    hair = cv2.GaussianBlur(hair.astype(np.float32), (0, 0), 2.0)
    ears = np.zeros(PHOTO_SHAPE, np.float32)
    for name in ("eye_right", "eye_left"):
        ex, ey = to_face_frame(LANDMARKS[name])
        side = np.sign(ex)
        ears = np.maximum(ears, (((fx - side * (a + 4.0)) / 10.0) ** 2 + ((fy - ey - 25.0) / 26.0) ** 2 <= 1.0))
    skin = np.clip(np.maximum.reduce([face, neck, ears]) - hair * (fy < hairline + 20), 0, 1)
    skin = cv2.GaussianBlur(skin.astype(np.float32), (7, 7), 2.0)

    if p.source == "procedural":
        color = background_texture(rng, PHOTO_SHAPE, ["noise", "gradient", "blobs", "stripes"][int(rng.integers(4))])
        tex = 1.0 + 0.06 * _noise(rng, PHOTO_SHAPE, 12.0) + 0.025 * _noise(rng, PHOTO_SHAPE, 1.2)
        skin_tex = skin_rgb * tex[..., None]
        cheeks = np.zeros(PHOTO_SHAPE, np.float32)
        for name in ("eye_right", "eye_left"):
            ex, ey = to_face_frame(LANDMARKS[name])
            cheeks += np.exp(-((fx - ex) ** 2 + (fy - ey - 40.0) ** 2) / (2 * 18.0 ** 2))
        skin_tex = skin_tex * (1 + rng.uniform(0, 0.12) * cheeks[..., None] * np.array([0.3, -0.3, -0.3], np.float32))
        head_shade = (1.0 - 0.15 * np.clip(((fx / a) ** 2 + (fy / b) ** 2), 0, 1.4))[..., None]  # pre-baked falloff
        cloth = cloth_rgb * (1.0 + 0.1 * _noise(rng, PHOTO_SHAPE, rng.uniform(1, 6)))[..., None]
        color = color * (1 - body[..., None]) + cloth * body[..., None]
        color = color * (1 - skin[..., None]) + skin_tex * head_shade * skin[..., None]
        strands = 1.0 + 0.18 * _noise(rng, PHOTO_SHAPE, 1.0) + 0.1 * _noise(rng, PHOTO_SHAPE, 6.0)
        color = color * (1 - hair[..., None]) + hair_rgb * strands[..., None] * hair[..., None]
        _paint_features(color, p, rng, hair_rgb, skin_rgb, features=True)
        color = cv2.GaussianBlur(np.clip(color, 0, 1).astype(np.float32), (0, 0), 0.8)
    else:
        color = photo(p.source).copy()
        skin = detect_skin(color)  # the photo's own skin
        if p.repaint > 0:
            face_skin = skin * (1 - hair)
            color = color * (1 - p.repaint) + _colour_transfer(color, face_skin, skin_rgb) * p.repaint
        _paint_features(color, p, rng, hair_rgb, skin_rgb, features=False)
        color = np.clip(color, 0, 1).astype(np.float32)

    # near-IR: skin drawn per identity with a little texture; hair and fabric by their own draws
    lum = color.mean(-1)
    body_only = body * (1 - skin)
    other = 0.4 * np.ones(PHOTO_SHAPE, np.float32)
    other = other * (1 - body_only) + p.fabric_ir * body_only
    other = other * (1 - hair) + p.hair_ir * hair
    lum_skin = float(lum[skin > 0.5].mean()) if (skin > 0.5).any() else 0.5
    ir_base = other * (1 - skin) + (p.skin_ir + 0.08 * (lum - lum_skin)) * skin
    return build_person(color.astype(np.float32), p.shape, skin=skin, ir_base=ir_base.astype(np.float32),
                        glasses=0.45 if p.glasses or p.source == "hopper" else 0.0)
