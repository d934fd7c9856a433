"""The face texture and the 3-D head built around it.

The only face photo is matplotlib's public-domain portrait of Grace Hopper (`sample_data/grace_hopper.jpg`,
installed with matplotlib). Its landmarks were measured once with the bundled BlazeFace model
(tests/test_sim_physics.py checks they still agree). The head is a height field over the photo:
an ellipsoid face with a nose ridge, eye sockets, lips and chin, a cap, hair at the sides and the
shoulders behind; heights are metres towards the camera, measured from the ear plane.

In the named domains, identity variety comes from skin tone, face width/height scaling, relief depth
and expression warps (smile, raised brows) applied to this one photo. build_person makes the layers for
any canonical texture and HeadShape (the randomised family's identities).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from edge_fas.errors import EdgeFasError

# Landmarks in photo pixels (x, y): BlazeFace keypoints on grace_hopper.jpg (512 x 600).
LANDMARKS = {
    "eye_right": (222.0, 195.0),  # the subject's right eye, on the left of the picture
    "eye_left": (308.0, 185.0),
    "nose": (268.0, 226.0),
    "mouth": (273.0, 274.0),
    "ear_right": (179.0, 233.0),
    "ear_left": (359.0, 215.0),
    # not BlazeFace points: on the cheekbones below the eyes, for relief checks
    "cheek_right": (214.0, 240.0),
    "cheek_left": (318.0, 230.0),
}
FACE_CENTER = (268.0, 236.0)  # centre of the face ellipse
FACE_AXES = (92.0, 112.0)  # semi-axes in photo pixels
ROLL_DEG = -6.5  # head roll in the photo (the eye line's slope)
PIXEL_M = 0.15 / 180.0
PHOTO_ROWS = 600  # the photo's own height; person layers extend below it (the torso)
BODY_EXTENSION_ROWS = 360  # metres per photo pixel: ~180 px from ear to ear on a ~150 mm face


def photo_path() -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


@functools.lru_cache(maxsize=1)
def load_photo() -> np.ndarray:
    """The portrait as float32 RGB in [0, 1], H x W x 3."""
    path = photo_path()
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeFasError(f"face photo {path} is missing or unreadable; the synthetic rig needs matplotlib's "
                           "sample data (reinstall matplotlib: pip install --force-reinstall matplotlib)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def face_coords(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Photo pixel grid in the face frame: x' along the eye line, y' down the face, origin at FACE_CENTER."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(np.radians(ROLL_DEG)), np.sin(np.radians(ROLL_DEG))
    dx, dy = x - FACE_CENTER[0], y - FACE_CENTER[1]
    return c * dx + s * dy, -s * dx + c * dy


def to_face_frame(point: tuple[float, float]) -> tuple[float, float]:
    c, s = np.cos(np.radians(ROLL_DEG)), np.sin(np.radians(ROLL_DEG))
    dx, dy = point[0] - FACE_CENTER[0], point[1] - FACE_CENTER[1]
    return c * dx + s * dy, -s * dx + c * dy


def _ellipse(x, y, cx, cy, a, b):
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2


def _dome(r2, height):
    return height * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))


@dataclass
class PersonLayers:
    """Everything about the bona fide person, on the photo's pixel grid."""

    color: np.ndarray  # H x W x 3 float32 RGB
    alpha: np.ndarray  # H x W float32, 1 on the person
    height: np.ndarray  # H x W float32 metres towards the camera
    face_relief: np.ndarray  # the face part alone (for masks to smooth)
    face_mask: np.ndarray  # H x W float32, the face ellipse
    skin: np.ndarray  # H x W float32, skin probability
    ir_albedo: np.ndarray  # H x W float32 near-IR reflectance
    specular: np.ndarray  # H x W float32 propensity for depth holes (glasses lenses, shiny cap badge)
    eye_holes: np.ndarray  # H x W float32, the eye openings a mask would have


@dataclass(frozen=True)
class HeadShape:
    """The head's relief around the canonical landmarks (metres towards the camera; widths in photo pixels).

    The defaults are the Grace Hopper head every named domain uses; the randomised family
    (edge_fas.sim.ranges) draws them per identity."""

    dome_m: float = 0.060  # the face ellipsoid's height
    nose_m: float = 0.024  # nose tip above the face surface
    nose_width_px: float = 13.0
    nose_bridge_px: float = 45.0  # how far above the tip the ridge starts
    socket_m: float = 0.010  # eye socket depth
    socket_px: float = 17.0
    lips_m: float = 0.006
    chin_m: float = 0.006
    brow_m: float = 0.0  # brow ridge (0: none, as the Hopper head)
    cheek_m: float = 0.0  # cheekbones (0: none)
    skull_m: float = 0.035
    cap_m: float = 0.045  # hair or cap crown


@functools.lru_cache(maxsize=1)
def person_layers() -> PersonLayers:
    """The Grace Hopper head: the named domains' one bona fide person."""
    return build_person(load_photo())


def build_person(color: np.ndarray, shape: HeadShape = HeadShape(), skin: np.ndarray | None = None,
                 ir_base: np.ndarray | None = None, glasses: float = 0.45) -> PersonLayers:
    """A person's layers on the canonical photo grid (PHOTO_ROWS x 512, landmarks at LANDMARKS).

    color: H x W x 3 float32 texture aligned to the canonical landmarks. skin: the skin probability
    (default: found from the colour, as for the Hopper photo). ir_base: near-IR reflectance before the
    pupils (default: skin bright and smooth, other materials following their visible luminance).
    glasses: depth drop-out propensity of the lenses' region (0: no glasses)."""
    h, w = color.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = face_coords((h, w))
    a, b = FACE_AXES

    face_r2 = (fx / a) ** 2 + (fy / b) ** 2
    face_mask = (face_r2 <= 1.0).astype(np.float32)
    head = _dome(face_r2, shape.dome_m)
    # nose: a ridge from between the eyes to the tip, sharpest at the tip
    nx, ny = to_face_frame(LANDMARKS["nose"])
    ramp = np.clip((fy - (ny - shape.nose_bridge_px)) / (shape.nose_bridge_px + 5.0), 0.0, 1.0) \
        * np.where(fy > ny + 5.0, np.exp(-((fy - ny - 5.0) / 9.0) ** 2), 1.0)
    nose = shape.nose_m * ramp * np.exp(-((fx - nx) / shape.nose_width_px) ** 2)
    sockets = np.zeros_like(fx)
    for name in ("eye_right", "eye_left"):
        ex, ey = to_face_frame(LANDMARKS[name])
        sockets -= shape.socket_m * np.exp(-((fx - ex) ** 2 + (fy - ey) ** 2) / (2 * shape.socket_px ** 2))
        if shape.cheek_m:
            sockets += shape.cheek_m * np.exp(-((fx - 1.05 * ex) ** 2 / (2 * 20.0 ** 2) + (fy - ey - 42.0) ** 2 / (2 * 14.0 ** 2)))
    mx, my = to_face_frame(LANDMARKS["mouth"])
    lips = shape.lips_m * np.exp(-((fx - mx) ** 2 / (2 * 24.0 ** 2) + (fy - my) ** 2 / (2 * 8.0 ** 2)))
    chin = shape.chin_m * np.exp(-((fx - mx) ** 2 / (2 * 30.0 ** 2) + (fy - my - 45.0) ** 2 / (2 * 12.0 ** 2)))
    face_relief = head + nose + sockets + lips + chin
    if shape.brow_m:
        ey = 0.5 * (to_face_frame(LANDMARKS["eye_right"])[1] + to_face_frame(LANDMARKS["eye_left"])[1])
        face_relief = face_relief + shape.brow_m * np.exp(-((fy - ey + 24.0) ** 2) / (2 * 7.0 ** 2)) \
            * np.exp(-(fx ** 2) / (2 * 55.0 ** 2))
    face_relief = face_relief * face_mask

    skull_r2 = _ellipse(x, y, 265.0, 215.0, 118.0, 140.0)
    cap_r2 = _ellipse(x, y, 262.0, 92.0, 118.0, 72.0)
    skull = _dome(skull_r2, shape.skull_m)
    cap = np.where(cap_r2 <= 1.0, 0.015 + _dome(cap_r2, shape.cap_m), -1.0)
    body = np.where(y > 300.0, -0.075 + _dome(((x - 265.0) / 260.0) ** 2, 0.045), -1.0)
    neck = np.where((np.abs(x - 267.0) < 68.0) & (y > 280.0) & (y < 420.0), -0.015, -1.0)
    height = np.maximum.reduce([np.where(skull_r2 <= 1.0, skull, -1.0), cap, body, neck,
                                np.where(face_mask > 0, face_relief, -1.0)])

    body_poly = np.array([[200, 318], [335, 318], [420, 368], [505, 440], [512, 600], [10, 600], [40, 420], [120, 360]],
                         np.int32)
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [body_poly], 1)
    alpha |= (skull_r2 <= 1.0) | (cap_r2 <= 1.0) | (face_mask > 0) | (neck > -1.0)
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (5, 5), 1.2)
    height = np.where(alpha > 0.01, height, -0.08).astype(np.float32)
    height = cv2.GaussianBlur(height, (5, 5), 1.0)

    r, g, bl = color[..., 0], color[..., 1], color[..., 2]
    if skin is None:
        skin = detect_skin(color)

    lum = 0.299 * r + 0.587 * g + 0.114 * bl
    if ir_base is None:
        # near-IR reflectance: skin is bright and smooth at 850 nm; dark fabric and hair less so
        ir_albedo = (0.30 + 0.35 * lum) * (1.0 - skin) + (0.62 + 0.12 * (lum - 0.5)) * skin
    else:
        ir_albedo = ir_base.astype(np.float32).copy()
    specular = np.zeros((h, w), np.float32)
    eye_holes = np.zeros((h, w), np.float32)
    for name in ("eye_right", "eye_left"):
        ex, ey = to_face_frame(LANDMARKS[name])
        lens = ((fx - ex) / 30.0) ** 2 + ((fy - ey) / 22.0) ** 2
        specular = np.maximum(specular, glasses * np.exp(-lens * 2.0))
        ir_albedo -= 0.35 * np.exp(-(((fx - ex) ** 2 + (fy - ey) ** 2) / (2 * 5.0 ** 2)))  # pupil
        eye_holes = np.maximum(eye_holes, (((fx - ex) / 15.0) ** 2 + ((fy - ey) / 9.0) ** 2 <= 1.0).astype(np.float32))
    layers = dict(color=color, alpha=alpha, height=height, face_relief=face_relief.astype(np.float32),
                  face_mask=face_mask, skin=skin, ir_albedo=np.clip(ir_albedo, 0.05, 1.0).astype(np.float32),
                  specular=specular, eye_holes=cv2.GaussianBlur(eye_holes, (3, 3), 0.8))
    # the torso goes on below the photo's edge: continue its last row so close subjects fill the frame
    for k, v in layers.items():
        layers[k] = cv2.copyMakeBorder(v, 0, BODY_EXTENSION_ROWS, 0, 0, cv2.BORDER_REPLICATE)
    return PersonLayers(**layers)


def detect_skin(color: np.ndarray) -> np.ndarray:
    """Skin probability of a canonical-grid photo: reddish pixels in the face ellipse and on the neck."""
    h, w = color.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = face_coords((h, w))
    a, b = FACE_AXES
    r, g, bl = color[..., 0], color[..., 1], color[..., 2]
    skin_region = ((fx / a) ** 2 + (fy / b) ** 2 <= 1.05) | ((np.abs(x - 267.0) < 60.0) & (y > 300.0) & (y < 360.0))
    skin = (skin_region & (r > 0.35) & (r > bl + 0.06) & (r >= g)).astype(np.float32)
    return cv2.GaussianBlur(skin, (7, 7), 2.0)


def expression_warp(shape: tuple[int, int], smile: float, brows: float) -> tuple[np.ndarray, np.ndarray]:
    """Remap grids for an expression: smile lifts the mouth corners, brows lifts the brow line (pixels)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = face_coords((h, w))
    mx, my = to_face_frame(LANDMARKS["mouth"])
    corner = np.exp(-((np.abs(fx - mx) - 26.0) ** 2 / (2 * 12.0 ** 2) + (fy - my) ** 2 / (2 * 14.0 ** 2)))
    brow = np.exp(-((fy - (my - 120.0)) ** 2) / (2 * 14.0 ** 2)) * np.exp(-((fx - mx) ** 2) / (2 * 60.0 ** 2))
    dy = smile * 6.0 * corner + brows * 5.0 * brow  # sample from below -> features move up
    return x, (y + dy).astype(np.float32)
