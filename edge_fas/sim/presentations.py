"""What stands in front of the rig, per species: a textured height field with its materials.

Each species is an `Atlas`: colour, alpha, height (metres towards the camera), near-IR albedo, depth
drop-out propensity (specular surfaces) and gloss on one pixel grid, plus where the face's landmarks
lie on it. The physics that tells attacks from faces lives here:

- bona_fide: the full head relief; skin's bright, smooth near-IR reflectance; glasses cause depth drop-outs.
- print: a sheet of paper (flat, or bent into a cylinder of 25-50 cm radius) carrying the whole photo
  with a white margin; halftone dots, desaturated, warm, lifted blacks; near-IR shows the paper (bright, flat)
  with only the carbon-black ink faintly; sharp sheet edges.
- replay: a flat screen with a black bezel showing the photo; emissive (scene light does not shade it),
  display gamma and blue cast, sub-pixel stripes that alias into moire; a screen shows almost nothing
  in near-IR (dark face region) and its glass makes specular depth drop-outs.
- rigid_mask: a resin mask over the wearer's face: face-shaped but smoothed, shallower relief, standing
  off the face; uniform bright resin near-IR; eye holes where the real eyes show; painted, glossy.
- paper_mask: a printed face cut out and held in front of the face: low cylindrical relief, paper
  near-IR, halftone, eye holes, the wearer's hair and body around it.
- flexible_mask: silicone, the subtle one: relief close to a face (softened, ~6 mm thick), near-IR albedo
  ~15% below skin's and more uniform, a seam at its border, a little sheen.
- partial: a bona fide face wearing printed paper glasses: a flat band over the eyes in paper material.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from edge_fas.sim.face_photo import (FACE_AXES, FACE_CENTER, LANDMARKS, PHOTO_ROWS, PIXEL_M, expression_warp,
                                     face_coords, person_layers, to_face_frame)


@dataclass(frozen=True)
class Subject:
    """One simulated identity: the photo with a skin tone, relief depth and expression."""

    tone: float = 1.0
    relief_gain: float = 1.0
    smile: float = 0.0
    brows: float = 0.0
    bend: float = 0.0  # print attacks: curvature of the bent sheet (1/metres; + bulges towards the camera)


@dataclass
class Atlas:
    species: str
    color: np.ndarray  # H x W x 3 float32 in [0, 1], unlit albedo (emissive areas: displayed radiance)
    alpha: np.ndarray  # H x W float32
    height: np.ndarray  # H x W float32, metres towards the camera
    ir_albedo: np.ndarray  # H x W float32
    specular: np.ndarray  # H x W float32 in [0, 1]: propensity of depth drop-outs
    emissive: np.ndarray  # H x W float32 in [0, 1]: 1 where the surface emits (screens)
    gloss: float  # strength of the specular highlight under the key light
    origin: tuple[float, float]  # atlas pixel that sits at the object's origin (the face centre)
    scale_m: float  # metres per atlas pixel
    landmarks: dict  # name -> (x, y) atlas pixels, incl. "face_outline" as an N x 2 array
    face_height: float  # mean height of the face region (for the face box's projection)
    # near-IR subsurface scattering, 0..1 (skin 1: a projected dot spreads in it; screens 0). Only the
    # randomised family renders it; the named domains ignore it.
    scatter: np.ndarray | None = None


def _luminance(c):
    return 0.299 * c[..., 0] + 0.587 * c[..., 1] + 0.114 * c[..., 2]


def _tone(color, skin, tone):
    # darker skin reduces blue most; blend by the skin mask so hair, cap and clothes keep their colour
    gains = np.array([tone, tone ** 1.15, tone ** 1.35], np.float32)
    return color * (1.0 - skin[..., None]) + np.clip(color * gains, 0, 1) * skin[..., None]


@functools.lru_cache(maxsize=4)
def _screens(h: int, w: int, period: float) -> np.ndarray:
    """A printer's rotated dot screens, one per ink (3 x H x W), kept for the next print of that size."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((3, h, w), np.float64)  # float64 as the rotation's np.float64 factors make it
    for ch, angle in enumerate((15.0, 75.0, 0.0)):
        t = np.radians(angle)
        u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
        out[ch] = 0.5 + 0.25 * (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period))
    return out


def halftone(color: np.ndarray, period: float = 3.2, desaturate: float = 0.25, strength: float = 1.0,
             black: float = 0.166, white: float = 0.94) -> np.ndarray:
    """A printer's look: rotated dot screens per ink (`strength` 0: finer than the texture, invisible),
    desaturation, warm paper, lifted blacks. `black` and `white`: the reflectance of the densest ink and of the
    paper under it (the defaults are the named domains' office print; photo paper reaches far darker blacks)."""
    h, w = color.shape[:2]
    screens = _screens(h, w, round(float(period), 3)) if strength > 0 else None
    out = np.empty_like(color)
    for ch in range(3):
        ink = 1.0 - color[..., ch]
        if screens is None:
            out[..., ch] = 1.0 - ink * 0.9
            continue
        out[..., ch] = 1.0 - np.clip((ink - screens[ch]) * 3.0 + ink, 0.0, 1.0) * 0.9
        if strength < 1.0:
            out[..., ch] = strength * out[..., ch] + (1.0 - strength) * (1.0 - ink * 0.9)
    lum = _luminance(out)[..., None]
    out = (1.0 - desaturate) * out + desaturate * lum  # printers desaturate
    # paper white is not white, black ink is not black (the screen's 90% coverage is the darkest the dots reach)
    out = black + (white - black) * (out - 0.1) / 0.9
    return np.clip(out * np.array([1.03, 1.0, 0.9], np.float32), 0, 1)


def _printed(photo, m):
    """The photo as printed on the attack medium (print, paper mask, paper glasses), with material set m."""
    return halftone(np.clip(photo * m["print_lightness"], 0, 1), m["halftone_period"], m["print_desaturate"],
                    m["halftone"], m["print_black"], m["print_white"])


def _faint_ink_ir(color, m=None):
    # most inks are transparent at 850 nm; the carbon black that makes the darkest tones is not
    m = m or MATERIALS
    darkness = np.clip(1.0 - _luminance(color) * 1.6, 0.0, 1.0)
    return (m["ink_paper_ir"] - m["ink_ir_dark"] * darkness).astype(np.float32)


def _landmarks(offset=(0.0, 0.0), scale=1.0):
    ox, oy = offset
    marks = {k: (v[0] * scale + ox, v[1] * scale + oy) for k, v in LANDMARKS.items()}
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    a, b = FACE_AXES
    c, s = np.cos(np.radians(-6.5)), np.sin(np.radians(-6.5))
    ex, ey = a * np.cos(t), b * np.sin(t)
    outline = np.stack([FACE_CENTER[0] + c * ex - s * ey, FACE_CENTER[1] + s * ex + c * ey], 1)
    # the detector's box spans brow to chin; the ellipse's top reaches the cap, so trim it a little
    outline[:, 1] = np.maximum(outline[:, 1], FACE_CENTER[1] - 0.85 * b)
    marks["face_outline"] = outline * scale + np.array([ox, oy])
    return marks


# Material constants of the named domains. The randomised family (edge_fas.sim.ranges) draws each of
# them per sample; a builder given `materials` uses those values and these for the rest.
MATERIALS = {
    "skin_gloss": 0.06,
    # print and paper: paper white, its near-IR reflectance, the ink's (carbon black absorbs at 850 nm)
    "paper_white": 0.93, "paper_ir": 0.84, "ink_paper_ir": 0.82, "ink_ir_dark": 0.22, "halftone_period": 3.2,
    "halftone": 1.0,  # strength of the visible dot screen (1: the named domains' coarse screen)
    "print_margin_px": 28, "print_gloss": 0.03, "print_desaturate": 0.25,
    # the printed photo's lightness: the densest ink's and the paper's reflectance under the photo, and a gain on
    # the photo before printing (the printer's or the attacker's brightness setting)
    "print_black": 0.166, "print_white": 0.94, "print_lightness": 1.0,
    # replay: display gamma and colour cast, near-IR of the panel, bezel, sub-pixel moire, a lamp's glare
    "screen_gamma": 1.25, "screen_cast": (0.92, 0.97, 1.1), "screen_ir": 0.03, "bezel_px": 30, "bezel_gray": 0.04,
    "screen_level": 0.78, "screen_moire": 0.3, "screen_glare": 0.12,
    # rigid mask: resin or plastic
    "resin_ir": 0.86, "resin_smooth_px": 9.0, "resin_relief": 0.75, "resin_standoff_m": 0.012, "resin_gloss": 0.25,
    "resin_blur_px": 1.6, "resin_contrast": 1.15, "resin_tint": (0.03, 0.0, -0.02),  # the paint's colour
    "resin_lightness": 1.0,  # the paint's lightness relative to the wearer's face
    # silicone mask
    "silicone_ir": 0.52, "silicone_ir_texture": 0.3, "silicone_m": 0.006, "silicone_smooth_px": 4.0,
    "silicone_seam": 0.35, "silicone_gloss": 0.14,
    "silicone_keep": 0.85, "silicone_desaturate": 0.15, "silicone_tint": (0.03, 0.0, 0.0),  # pigmented silicone
    "silicone_lightness": 1.0,  # the pigment's lightness relative to the wearer's skin
    # paper mask and paper glasses
    "paper_mask_gloss": 0.02, "partial_gloss": 0.02,
    # how much of the wearer's own hair lies over a worn mask's edge and forehead (0: the mask covers it)
    "mask_hair_over": 0.0,
    # near-IR subsurface scattering per material (see Atlas.scatter)
    "skin_scatter": 1.0, "other_scatter": 0.3, "paper_scatter": 0.35, "screen_scatter": 0.0, "resin_scatter": 0.2,
    "silicone_scatter": 0.8,
}


def _person(subject: Subject, person=None, m=None):
    p = person if person is not None else person_layers()
    m = m or MATERIALS
    color = _tone(p.color, p.skin, subject.tone)
    ir = p.ir_albedo * np.where(p.skin > 0.5, 0.9 + 0.1 * subject.tone, 1.0)
    height = p.height + (subject.relief_gain - 1.0) * p.face_relief
    scatter = (m["other_scatter"] + (m["skin_scatter"] - m["other_scatter"]) * p.skin).astype(np.float32)
    layers = dict(color=color, alpha=p.alpha.copy(), height=height.astype(np.float32), ir=ir.astype(np.float32),
                  specular=p.specular.copy(), scatter=scatter)
    if subject.smile or subject.brows:
        mx, my = expression_warp(color.shape[:2], subject.smile, subject.brows)
        for k in ("color", "height", "ir"):
            layers[k] = cv2.remap(layers[k], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return p, layers


def _face_height(height, face_mask):
    return float((height * face_mask).sum() / max(face_mask.sum(), 1.0))


def build_atlas(species: str, subject: Subject, person=None, materials: dict | None = None) -> Atlas:
    """The atlas of `species` worn or shown by `subject`. person: the PersonLayers (default: the
    Grace Hopper head); materials: overrides of MATERIALS (unknown names are an error)."""
    builder = _BUILDERS.get(species)
    if builder is None:
        from edge_fas.errors import ConfigError

        raise ConfigError(f"synthetic species {species!r} is unknown; expected one of {', '.join(_BUILDERS)}")
    unknown = sorted(set(materials or {}) - set(MATERIALS))
    if unknown:
        raise ValueError(f"unknown material parameter(s) {unknown}; known: {sorted(MATERIALS)}")
    return builder(subject, person, {**MATERIALS, **(materials or {})})


def _bona_fide(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    zero = np.zeros_like(L["alpha"])
    return Atlas("bona_fide", L["color"], L["alpha"], L["height"], L["ir"], L["specular"], zero, gloss=m["skin_gloss"],
                 origin=FACE_CENTER, scale_m=PIXEL_M, landmarks=_landmarks(),
                 face_height=_face_height(L["height"], p.face_mask), scatter=L["scatter"])


def _sheet(content: np.ndarray, margin: int, fill: float):
    h, w = content.shape[:2]
    out = np.full((h + 2 * margin, w + 2 * margin) + content.shape[2:], fill, np.float32)
    out[margin:margin + h, margin:margin + w] = content
    return out


def _print(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    margin = int(m["print_margin_px"])
    printed = _printed(L["color"][:PHOTO_ROWS], m)
    color = _sheet(printed, margin, m["paper_white"])  # the photo printed with a white margin
    h, w = color.shape[:2]
    x = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    half = w / 2.0
    height = np.full((h, w), 0.07, np.float32)
    if subject.bend:  # a cylinder of radius 1/|bend| about the sheet's vertical centre line
        radius = 1.0 / abs(subject.bend)
        xm = np.clip((x - half) * PIXEL_M, -0.99 * radius, 0.99 * radius)
        sag = np.sqrt(radius ** 2 - xm ** 2) - np.sqrt(max(radius ** 2 - (half * PIXEL_M) ** 2, 0.0))
        height += (np.sign(subject.bend) * sag).astype(np.float32)
    alpha = np.ones((h, w), np.float32)
    ir = _faint_ink_ir(color, m)
    if margin:
        ir[:margin], ir[-margin:], ir[:, :margin], ir[:, -margin:] = (m["paper_ir"],) * 4
    origin = (FACE_CENTER[0] + margin, FACE_CENTER[1] + margin)
    fm = _sheet(p.face_mask[:PHOTO_ROWS], margin, 0.0)
    return Atlas("print", color, alpha, height, ir, np.zeros_like(alpha), np.zeros_like(alpha), gloss=m["print_gloss"],
                 origin=origin, scale_m=PIXEL_M, landmarks=_landmarks((margin, margin)),
                 face_height=_face_height(height, fm), scatter=np.full((h, w), m["paper_scatter"], np.float32))


@functools.lru_cache(maxsize=4)
def _screen_pattern(h0: int, w0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h0, 0:w0].astype(np.float32)
    stripes = np.stack([0.5 + 0.5 * np.cos(2 * np.pi * (x / 2.6 - k / 3.0)) for k in range(3)], -1)
    rows = (0.9 + 0.08 * np.cos(2 * np.pi * y / 2.3))[..., None]
    glare = np.clip(1.0 - np.abs((x - 0.9 * y) / (0.35 * w0)), 0, 1)[..., None]
    return stripes, rows, glare


def _replay(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    h0, w0 = PHOTO_ROWS, L["color"].shape[1]
    # display gamma, colour cast
    shown = np.clip(L["color"][:PHOTO_ROWS], 0, 1) ** m["screen_gamma"] * np.array(m["screen_cast"], np.float32)
    stripes, rows, glare = _screen_pattern(h0, w0)
    moire = m["screen_moire"]
    shown = shown * (m["screen_level"] + moire * stripes)  # RGB sub-pixel columns: alias into moire at most distances
    shown *= rows  # pixel rows
    bezel = int(m["bezel_px"])
    color = _sheet(np.clip(shown + glare * m["screen_glare"], 0, 1), bezel, m["bezel_gray"])  # + a lamp's reflection
    emissive = _sheet(np.ones((h0, w0), np.float32), bezel, 0.0)
    h, w = color.shape[:2]
    alpha = np.ones((h, w), np.float32)
    height = np.full((h, w), 0.07, np.float32)
    rng = np.random.default_rng(7)
    blobs = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 12)
    blobs = (blobs - blobs.min()) / (np.ptp(blobs) + 1e-6)
    specular = np.clip((blobs - 0.55) * 3.0, 0, 0.9) * emissive  # glossy glass: patches of drop-outs
    ir = m["screen_ir"] + 0.02 * (1.0 - emissive)  # LCDs emit no near-IR and absorb most of it
    fm = _sheet(p.face_mask[:PHOTO_ROWS], bezel, 0.0)
    return Atlas("replay", color, alpha, height, ir.astype(np.float32), specular.astype(np.float32), emissive,
                 gloss=0.0, origin=(FACE_CENTER[0] + bezel, FACE_CENTER[1] + bezel), scale_m=PIXEL_M,
                 landmarks=_landmarks((bezel, bezel)), face_height=_face_height(height, fm),
                 scatter=(m["screen_scatter"] * emissive + m["other_scatter"] * (1.0 - emissive)).astype(np.float32))


FOREHEAD_ABOVE_BROWS = -72.0  # face-frame y (photo pixels) above which the forehead lies over the brows


def _hair_over(p, amount: float) -> np.ndarray:
    """Where, and how opaquely, the wearer's own hair lies in front of a worn mask: the person's non-skin
    pixels above the brows or outside the face ellipse (fringe and temples), times `amount`. Without it a mask
    replaces the forehead hair with its own material, so a flat near-IR forehead, which is also what
    bright-haired people show, would mark every mask (the rig-side cause of bona fide rejections going
    with drawn hair reflectance; docs/demo-model.md)."""
    if amount <= 0:
        return np.zeros_like(p.skin)
    _, fy = face_coords(p.skin.shape)
    upper = np.clip((FOREHEAD_ABOVE_BROWS - fy) / 6.0, 0.0, 1.0)
    outside = 1.0 - p.face_mask
    return (amount * p.alpha * (1.0 - p.skin) * np.maximum(upper, outside)).astype(np.float32)


def _over_face(p, L, mask_alpha, mask_height, mask_color, mask_ir, eye_holes=True, gloss=0.1, species="",
               scatter=0.3, hair_over=0.0):
    """Composite a mask onto the wearer: the mask inside mask_alpha, the wearer outside and through the eye holes;
    hair_over: how much of the wearer's hair lies in front of the mask (see _hair_over)."""
    m = mask_alpha * (1.0 - p.eye_holes) if eye_holes else mask_alpha
    height = np.where(m > 0.5, mask_height, L["height"]).astype(np.float32)  # hair lies on the mask's surface
    m = m * (1.0 - _hair_over(p, hair_over))
    color = L["color"] * (1 - m[..., None]) + mask_color * m[..., None]
    ir = (L["ir"] * (1 - m) + mask_ir * m).astype(np.float32)
    specular = (L["specular"] * (1 - m)).astype(np.float32)
    return Atlas(species, color.astype(np.float32), L["alpha"], height, ir, specular, np.zeros_like(m), gloss=gloss,
                 origin=FACE_CENTER, scale_m=PIXEL_M, landmarks=_landmarks(),
                 face_height=_face_height(height, p.face_mask),
                 scatter=(L["scatter"] * (1 - m) + scatter * m).astype(np.float32))


def _mask_region(p, grow=1.06):
    fx, fy = face_coords(p.alpha.shape)
    a, b = FACE_AXES
    inside = (((fx / (a * grow)) ** 2 + ((fy + 8.0) / (b * grow)) ** 2) <= 1.0).astype(np.float32)
    return cv2.GaussianBlur(inside, (3, 3), 0.7)


def _rigid_mask(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    region = _mask_region(p)
    smooth = cv2.GaussianBlur(p.face_relief, (0, 0), m["resin_smooth_px"])  # moulded: no fine relief, rounded nose
    height = m["resin_standoff_m"] + m["resin_relief"] * smooth / max(float(smooth.max()), 1e-6) * float(p.face_relief.max())
    painted = cv2.GaussianBlur(L["color"], (0, 0), m["resin_blur_px"])
    painted = np.clip(((painted - 0.5) * m["resin_contrast"] + 0.5) * m["resin_lightness"]
                      + np.array(m["resin_tint"], np.float32), 0, 1)
    ir = m["resin_ir"] + 0.03 * (_luminance(painted) - 0.5)  # resin: bright and uniform at 850 nm
    return _over_face(p, L, region, height, painted, ir, gloss=m["resin_gloss"], species="rigid_mask",
                      scatter=m["resin_scatter"], hair_over=m["mask_hair_over"])


def _paper_mask(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    region = _mask_region(p, grow=1.0)
    fx, _ = face_coords(p.alpha.shape)
    a = FACE_AXES[0]
    tip = float(p.face_relief.max())
    height = tip + 0.006 + 0.012 * (1.0 - np.clip(fx / a, -1, 1) ** 2) - 0.012  # a sheet curved round the face
    printed = _printed(L["color"], m)
    return _over_face(p, L, region, height.astype(np.float32), printed, _faint_ink_ir(L["color"], m),
                      gloss=m["paper_mask_gloss"], species="paper_mask", scatter=m["paper_scatter"],
                      hair_over=m["mask_hair_over"])


def _flexible_mask(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    region = _mask_region(p, grow=1.1)
    # ~6 mm of silicone, softened detail
    height = m["silicone_m"] + 0.95 * cv2.GaussianBlur(L["height"], (0, 0), m["silicone_smooth_px"])
    skin_like = cv2.GaussianBlur(L["color"], (0, 0), 1.0)
    lum = _luminance(skin_like)[..., None]
    skin_like = np.clip((m["silicone_keep"] * skin_like + m["silicone_desaturate"] * lum) * m["silicone_lightness"]
                        + np.array(m["silicone_tint"], np.float32), 0, 1)
    ir_face = L["ir"]
    # silicone at 850 nm: a little darker than skin (~15%) and more uniform (no blood, no subsurface texture)
    ir = m["silicone_ir"] + m["silicone_ir_texture"] * (ir_face - float(ir_face[region > 0.5].mean()))
    seam = cv2.morphologyEx((region > 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    skin_like = skin_like * (1.0 - m["silicone_seam"] * seam[..., None])  # the glued edge shows
    return _over_face(p, L, region, height.astype(np.float32), skin_like, ir.astype(np.float32),
                      gloss=m["silicone_gloss"], species="flexible_mask", scatter=m["silicone_scatter"],
                      hair_over=m["mask_hair_over"])


def _partial(subject: Subject, person, m) -> Atlas:
    p, L = _person(subject, person, m)
    fx, fy = face_coords(p.alpha.shape)
    ey = 0.5 * (to_face_frame(LANDMARKS["eye_right"])[1] + to_face_frame(LANDMARKS["eye_left"])[1])
    band = ((np.abs(fy - ey) < 26.0) & (np.abs(fx) < 86.0)).astype(np.float32)
    band = cv2.GaussianBlur(band, (3, 3), 0.7)
    level = float(np.percentile(L["height"][band > 0.5], 95)) + 0.006  # paper glasses rest on the nose bridge
    printed = _printed(cv2.GaussianBlur(L["color"], (0, 0), 0.8), m)
    shifted = np.roll(printed, (2, 3), (0, 1))  # the printed eyes are not exactly the wearer's
    atlas = _over_face(p, L, band, np.full_like(band, level), shifted, _faint_ink_ir(shifted, m), eye_holes=False,
                       gloss=m["partial_gloss"], species="partial", scatter=m["paper_scatter"])
    return atlas


_BUILDERS = {"bona_fide": _bona_fide, "print": _print, "replay": _replay, "rigid_mask": _rigid_mask,
             "paper_mask": _paper_mask, "flexible_mask": _flexible_mask, "partial": _partial}


def add_hands(atlas: Atlas, rng: np.random.Generator, count: int, skin_rgb, skin_ir: float, pad: int = 110) -> Atlas:
    """An attacker's hands holding a print, screen or paper mask: a thumb over the medium's border and the
    rest of the hand beyond it (skin in all three modalities, standing off the medium). The atlas grows by
    `pad` transparent pixels on every side so the hands can reach past the border."""
    def grow(a, fill):
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if a.ndim == 3 else ())
        return np.pad(a, widths, constant_values=fill)

    sheet = grow(atlas.alpha, 0.0) > 0.5
    color, alpha = grow(atlas.color, 0.0), grow(atlas.alpha, 0.0)
    height = np.pad(atlas.height, pad, mode="edge")
    ir, specular, emissive = grow(atlas.ir_albedo, 0.0), grow(atlas.specular, 0.0), grow(atlas.emissive, 0.0)
    scatter = grow(atlas.scatter if atlas.scatter is not None else np.zeros_like(atlas.alpha), 0.0)
    h, w = alpha.shape
    ys, xs = np.nonzero(sheet)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    edges = ["left", "right", "bottom"]
    for k in range(int(count)):
        edge = edges[int(rng.integers(3))] if k == 0 else ("right" if edge == "left" else "left")
        if edge == "bottom":
            cx, cy, angle = rng.uniform(left + 60, right - 60), bottom - 12.0, 90.0
            palm = (cx + rng.uniform(-20, 20), bottom + 55.0)
        else:
            side = -1 if edge == "left" else 1
            cx = (left + 14.0) if side < 0 else (right - 14.0)
            cy, angle = rng.uniform(top + 0.35 * (bottom - top), bottom - 40), rng.uniform(-25, 25)
            palm = ((left - 50.0) if side < 0 else (right + 50.0), cy + rng.uniform(10, 40))
        level = float(height[int(np.clip(cy, 0, h - 1)), int(np.clip(cx, 0, w - 1))])
        tone = np.clip(np.asarray(skin_rgb, np.float32) * rng.uniform(0.85, 1.15), 0, 1)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for (px, py), axes, ang, lift in (((palm[0], palm[1]), (48.0, 62.0), angle, -0.02),
                                          ((cx, cy), (13.0, 36.0), angle, 0.012)):
            t = np.radians(ang)
            u = ((xx - px) * np.cos(t) + (yy - py) * np.sin(t)) / axes[0]
            v = (-(xx - px) * np.sin(t) + (yy - py) * np.cos(t)) / axes[1]
            r2 = u * u + v * v
            part = r2 <= 1.0
            if lift < 0:
                part &= ~sheet  # the palm is behind the medium: only what shows beyond its border
            dome = level + lift + 0.009 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
            shade = (0.8 + 0.2 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)))[..., None]
            color[part] = (tone * shade)[part]
            alpha[part], height[part], ir[part] = 1.0, dome[part], skin_ir
            specular[part], emissive[part], scatter[part] = 0.0, 0.0, 1.0
    marks = {k: (np.asarray(v) + pad if k == "face_outline" else (v[0] + pad, v[1] + pad))
             for k, v in atlas.landmarks.items()}
    return Atlas(atlas.species, color, alpha, height.astype(np.float32), ir, specular, emissive, gloss=atlas.gloss,
                 origin=(atlas.origin[0] + pad, atlas.origin[1] + pad), scale_m=atlas.scale_m, landmarks=marks,
                 face_height=atlas.face_height, scatter=scatter)
