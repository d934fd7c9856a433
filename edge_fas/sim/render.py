"""Rendering a presentation into one camera, and the sensor models that turn it into raw frames.

Geometry: the presentation is a height field over a plane (its atlas). For each camera pixel the ray
is intersected with the plane raised by the height found at the previous guess (parallax mapping,
three fixed-point steps on a half-resolution grid), which is exact for a flat surface and within a fraction of a millimetre for
a face's gentle relief at 0.35-1.2 m. The plane-to-pixel maps are separable sums, and the lookups are
cv2.remap calls, so a 640x480 frame set renders in a few milliseconds on one core.

Sensor models (parameters from the domain, edge_fas.sim.domains):
- depth: sigma(z) = k z^2 noise (white plus a low-frequency blotch), drop-outs at depth edges, the
  active-stereo occlusion shadow left of foreground objects, on dark and specular surfaces, random
  pixels, and outside the working range; millimetre quantisation.
- IR: albedo x (emitter falloff 1/z^2 + ambient near-IR), the emitter's dot pattern (speckle) shifting
  with disparity, read noise; the IR imager is the depth imager (same pixels).
- colour: key + ambient light with gloss, exposure, white balance, gamma, read noise, motion blur,
  optics softness (rendering at lower resolution for low-resolution domains).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_fas.calibration import Intrinsics
from edge_fas.sim.presentations import Atlas

PARALLAX_STEPS = 3  # ray/height-field fixed-point steps


@dataclass
class View:
    """One camera's fixed state: intrinsics, world-to-camera pose, and its normalised ray grids
    (full resolution, and a half-resolution grid whose pixel centres match cv2.resize's).

    A pinhole camera's grids are separable (a row and a column); with lens distortion (Brown-Conrady,
    pixel = distort(ray), as edge_fas.calibration models it) every pixel's ray is undistorted once here
    and the grids are full images."""

    intrinsics: Intrinsics
    R: np.ndarray  # world -> camera rotation
    t: np.ndarray  # world -> camera translation (metres)

    def __post_init__(self):
        k = self.intrinsics
        cw, ch = (k.width + 1) // 2, (k.height + 1) // 2
        px, py = np.arange(k.width, dtype=np.float32), np.arange(k.height, dtype=np.float32)
        cx, cy = 2.0 * np.arange(cw, dtype=np.float32) + 0.5, 2.0 * np.arange(ch, dtype=np.float32) + 0.5
        if self.distorted:
            self.xn, self.yn = self._undistorted_grid(px, py)
            self.coarse_xn, self.coarse_yn = self._undistorted_grid(cx, cy)
        else:
            self.xn = ((px - k.cx) / k.fx)[None, :]
            self.yn = ((py - k.cy) / k.fy)[:, None]
            self.coarse_xn = ((cx - k.cx) / k.fx)[None, :]
            self.coarse_yn = ((cy - k.cy) / k.fy)[:, None]

    @property
    def distorted(self) -> bool:
        k = self.intrinsics
        return k.model != "none" and any(abs(c) > 0 for c in k.coeffs)

    def _undistorted_grid(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.intrinsics
        if k.model != "brown_conrady":
            raise ValueError(f"the synthetic rig renders pinhole or brown_conrady cameras, not {k.model!r}")
        gx, gy = np.meshgrid(px, py)
        pts = np.stack([gx.ravel(), gy.ravel()], -1).reshape(-1, 1, 2).astype(np.float64)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
        xy = cv2.undistortPoints(pts, k.K, k.dist, None, None, None, crit).reshape(gx.shape + (2,))
        return np.ascontiguousarray(xy[..., 0], np.float32), np.ascontiguousarray(xy[..., 1], np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.intrinsics.height, self.intrinsics.width

    def ray_dot(self, v: np.ndarray, coarse: bool = False) -> np.ndarray:
        """v . (x_n, y_n, 1) for every pixel, v in this camera's frame."""
        xn, yn = (self.coarse_xn, self.coarse_yn) if coarse else (self.xn, self.yn)
        return (np.float32(v[0]) * xn + np.float32(v[1]) * yn + np.float32(v[2])).astype(np.float32)

    def project(self, points_world: np.ndarray) -> np.ndarray:
        p = points_world @ self.R.T + self.t
        k = self.intrinsics
        if self.distorted:
            px, _ = cv2.projectPoints(p.reshape(-1, 1, 3).astype(np.float64), np.zeros(3), np.zeros(3), k.K, k.dist)
            return px.reshape(-1, 2)
        return np.stack([k.fx * p[:, 0] / p[:, 2] + k.cx, k.fy * p[:, 1] / p[:, 2] + k.cy], 1)


@dataclass(frozen=True)
class Pose:
    """Where the presentation's origin (the face centre) is, and how it is turned (world = colour camera)."""

    x: float
    y: float
    z: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    scale_x: float = 1.0  # face width / photo's face width
    scale_y: float = 1.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, down, towards-camera) unit vectors in world coordinates."""
        y, p, r = np.radians([self.yaw_deg, self.pitch_deg, self.roll_deg])
        ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
        rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
        rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
        rot = ry @ rx @ rz
        return rot[:, 0], rot[:, 1], -rot[:, 2]

    def origin(self) -> np.ndarray:
        return np.array([self.x, self.y, self.z])

    def atlas_to_world(self, atlas: Atlas, px: np.ndarray, heights: np.ndarray) -> np.ndarray:
        eu, ev, en = self.axes()
        a = (px[:, 0] - atlas.origin[0]) * atlas.scale_m * self.scale_x
        b = (px[:, 1] - atlas.origin[1]) * atlas.scale_m * self.scale_y
        return self.origin() + a[:, None] * eu + b[:, None] * ev + np.asarray(heights)[:, None] * en


MISS_M = 100.0  # depth given to rays that miss the presentation's plane


@dataclass
class Surface:
    """A presentation seen by one camera: depth along the optical axis and the atlas lookup maps."""

    z: np.ndarray  # H x W float32 metres (MISS_M where the plane is not hit)
    map_x: np.ndarray
    map_y: np.ndarray
    coarse_x: np.ndarray  # the same maps at half resolution (for smooth quantities such as shading)
    coarse_y: np.ndarray


def trace_surface(view: View, prepared: "PreparedAtlas", pose: Pose) -> Surface:
    """Intersect every pixel's ray with the presentation. The fixed-point steps run on a half-resolution
    grid (the maps are smooth), then the maps are upsampled for the full-resolution texture lookups."""
    atlas = prepared.atlas
    eu, ev, en = (view.R @ v for v in pose.axes())
    c = view.R @ pose.origin() + view.t
    dn = view.ray_dot(en, coarse=True)
    dn = np.minimum(dn, np.float32(-1e-4))  # rays (nearly) parallel to the plane miss it
    inv_dn = np.float32(1.0) / dn
    kn, ku, kv = float(en @ c), float(eu @ c), float(ev @ c)
    sx = 1.0 / (atlas.scale_m * pose.scale_x)
    sy = 1.0 / (atlas.scale_m * pose.scale_y)
    du = view.ray_dot(eu * sx, coarse=True)
    dv = view.ray_dot(ev * sy, coarse=True)
    ox, oy = np.float32(atlas.origin[0] - ku * sx), np.float32(atlas.origin[1] - kv * sy)
    hh: np.ndarray | float = atlas.face_height
    for step in range(PARALLAX_STEPS):
        s = (np.float32(kn) + hh) * inv_dn
        map_x = s * du + ox
        map_y = s * dv + oy
        if step < PARALLAX_STEPS - 1:
            hh = cv2.remap(prepared.height, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    s = np.where(s > 0, np.minimum(s, np.float32(MISS_M)), np.float32(MISS_M))
    size = (view.shape[1], view.shape[0])
    up = [cv2.resize(a.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) for a in (s, map_x, map_y)]
    return Surface(z=up[0], map_x=up[1], map_y=up[2], coarse_x=map_x, coarse_y=map_y)


def plane_depth(view: View, distance_m: float, tilt_deg: float = 0.0) -> np.ndarray:
    """Depth of a wall facing the colour camera at `distance_m`, turned by `tilt_deg` about the vertical."""
    t = np.radians(tilt_deg)
    n_world = np.array([np.sin(t), 0.0, -np.cos(t)])  # towards the camera
    point = np.array([0.0, 0.0, distance_m])
    n = view.R @ n_world
    c = view.R @ point + view.t
    return (float(n @ c) / view.ray_dot(n)).astype(np.float32)


@dataclass(frozen=True)
class Lighting:
    azimuth_deg: float  # key light direction, in the presentation's frame
    elevation_deg: float
    ambient: float  # fraction of light that is ambient
    intensity: float = 1.0


@dataclass
class PreparedAtlas:
    """An atlas packed for remapping: the arrays each camera looks up, and the atlas's metadata."""

    atlas: Atlas  # metadata (origin, scale, landmarks); its big arrays are released after packing
    rgba: np.ndarray  # H x W x 4 uint8: albedo RGB, alpha
    normals: np.ndarray  # H x W x 4 float32: surface normal (right, down, towards camera), emissive
    geometry: np.ndarray  # H x W x 4 float32: height, IR albedo lit head-on, drop-out propensity, alpha
    height: np.ndarray  # H x W float32 (also geometry[..., 0]; contiguous for the parallax lookups)
    scatter: np.ndarray | None = None  # H x W float32 near-IR subsurface scattering (randomised family)


def prepare_atlas(atlas: Atlas) -> PreparedAtlas:
    gy, gx = np.gradient(atlas.height / atlas.scale_m)
    inv_norm = 1.0 / np.sqrt(1.0 + gx * gx + gy * gy)
    normals = np.dstack([-gx * inv_norm, -gy * inv_norm, inv_norm, atlas.emissive]).astype(np.float32)
    rgba = (np.dstack([np.clip(atlas.color, 0, 1), atlas.alpha]) * 255.0 + 0.5).astype(np.uint8)
    # the emitter sits at the camera, so IR is lit head-on: albedo x cos(normal, optical axis)
    geometry = np.dstack([atlas.height, atlas.ir_albedo * inv_norm, atlas.specular, atlas.alpha]).astype(np.float32)
    meta = Atlas(atlas.species, color=None, alpha=None, height=None, ir_albedo=None, specular=None, emissive=None,
                 gloss=atlas.gloss, origin=atlas.origin, scale_m=atlas.scale_m, landmarks=atlas.landmarks,
                 face_height=atlas.face_height)
    scatter = None if atlas.scatter is None else np.ascontiguousarray(atlas.scatter, np.float32)
    return PreparedAtlas(meta, np.ascontiguousarray(rgba), np.ascontiguousarray(normals),
                         np.ascontiguousarray(geometry), np.ascontiguousarray(atlas.height.astype(np.float32)), scatter)


def shading(normals: np.ndarray, lighting: Lighting, gloss: float) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse factor and additive highlight (0..255) for remapped atlas normals: a key light plus
    ambient, a glossy highlight; emissive pixels (screens) keep their own radiance (factor 0.95)."""
    az, el = np.radians(lighting.azimuth_deg), np.radians(lighting.elevation_deg)
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)], np.float32)
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    nx, ny, nz, emissive = cv2.split(normals)
    lambert = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    lit = np.float32(lighting.ambient * lighting.intensity) + np.float32((1 - lighting.ambient) * lighting.intensity) * lambert
    lit += emissive * (np.float32(0.95) - lit)
    if gloss <= 0:
        return lit, np.zeros_like(lit)
    h = np.clip(nx * half[0] + ny * half[1] + nz * half[2], 0.0, 1.0)
    h3 = h * h * h
    h24 = h3 * h3
    h24 *= h24
    h24 *= h24  # h ** 24 by squaring: a tight highlight
    return lit, np.float32(255.0 * gloss) * h24 * (1.0 - emissive)


def composite_color(view: View, prepared: PreparedAtlas, pose: Pose, wall_z: np.ndarray, wall_planes, lighting: Lighting,
                    gains) -> np.ndarray:
    """The presentation lit by `lighting` in front of the wall (its depth and R, G, B planes), times the
    per-channel gains (exposure and white balance are linear, so they apply here, before any resize or
    blur): H x W x 3 float32 at the view's size. Per channel on 2-D planes: numpy's broadcasting over a
    third axis is several times slower."""
    surface = trace_surface(view, prepared, pose)
    remap = dict(interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    px = cv2.remap(prepared.rgba, surface.map_x, surface.map_y, **remap)
    # shading varies smoothly: compute it on the half-resolution grid, then upsample
    normals = cv2.remap(prepared.normals, surface.coarse_x, surface.coarse_y, **remap)
    lit, highlight = shading(normals, lighting, prepared.atlas.gloss)
    lit, highlight = cv2.split(cv2.resize(cv2.merge([lit, highlight]), (view.shape[1], view.shape[0])))
    r, g, b, a = cv2.split(px)
    alpha = a.astype(np.float32) * np.float32(1.0 / 255.0) * (surface.z < wall_z)
    wall_level = 0.6 + 0.4 * lighting.intensity
    planes = []
    for c, wall, gain in zip((r, g, b), wall_planes, gains):
        wall = wall * np.float32(wall_level)
        shaded = c.astype(np.float32) * lit + highlight
        planes.append((wall + alpha * (shaded - wall)) * np.float32(gain))
    return cv2.merge(planes)


class NoisePools:
    """Pre-drawn random fields, sliced at random offsets per frame: noise without drawing 300k numbers a frame."""

    PAD = 96

    def __init__(self, shape: tuple[int, int], seed: int):
        h, w = shape
        rng = np.random.default_rng(seed)
        big = (h + self.PAD, w + self.PAD)
        self.white = rng.standard_normal(big).astype(np.float32)
        low = cv2.GaussianBlur(rng.standard_normal(big).astype(np.float32), (0, 0), 9.0)
        self.low = (low / (low.std() + 1e-6)).astype(np.float32)
        self.uniform = rng.random(big).astype(np.float32)
        dots = (rng.random((h + self.PAD, w + 4 * self.PAD)) < 0.09).astype(np.float32)
        dots = cv2.GaussianBlur(dots, (0, 0), 0.75)
        self.dots = (dots / dots.mean()).astype(np.float32)  # the emitter's pattern, mean 1
        self.color = rng.standard_normal(big + (3,)).astype(np.float32)
        self.shape = shape

    def slice(self, pool: np.ndarray, rng: np.random.Generator, shape=None) -> np.ndarray:
        h, w = shape or self.shape
        oy = int(rng.integers(0, pool.shape[0] - h + 1))
        ox = int(rng.integers(0, pool.shape[1] - w + 1))
        return pool[oy:oy + h, ox:ox + w]


def shadow_band(foreground: np.ndarray, width_px: int) -> np.ndarray:
    """Background pixels within `width_px` left of a foreground edge: the stereo occlusion shadow."""
    if width_px < 1:
        return np.zeros_like(foreground, dtype=bool)
    kernel = np.ones((1, width_px), np.uint8)
    grown = cv2.dilate(foreground.astype(np.uint8), kernel, anchor=(0, 0))
    return (grown > 0) & ~foreground
