"""The randomised family: a rig whose every factor is drawn from a range set (edge_fas.sim.ranges).

    rig = RandomizedRig("rand", seed=0, width=320, height=240)
    frames = rig.render("print", index=7, t=0.3)      # same FrameSet contract as Rig
    frames.meta["sim"]["scene"]                         # every drawn factor of this sample

Per sample index (all deterministic in range set, seed, species, index):
- identity (index // IDENTITY_BLOCK): photo or procedural texture, skin, hair and fabric in colour and
  near-IR, head shape, glasses, beard (edge_fas.sim.identity);
- camera (index // CAMERA_BLOCK; one camera for the whole rig with fixed_camera=True, as a live
  device): fields of view, Brown-Conrady lens distortion, principal point, colour-to-depth baseline and
  rotation, stereo baseline, optics sharpness, depth resolution, emitter pattern (active-stereo dots,
  structured light, flood, none), depth noise, quantisation, filtering and edge behaviour, IR response;
- the sample itself: pose, light (visible and near-IR ambient), exposure, motion blur, rolling
  shutter, JPEG, background wall, the attack's materials, an attacker's hands.

Physics beyond the named domains' (edge_fas.sim.rig):
- depth comes from disparity (stereo or projector-camera triangulation): noise and quantisation are in
  disparity, so depth error grows as z^2 / (f b); a flood emitter is treated as time-of-flight (noise
  linear in z, no shadow, more flying pixels);
- edge pixels are dropped or kept as flying pixels between foreground and background;
- a projected dot spreads in skin and silicone (subsurface scattering) and stays sharp on paper,
  plastic and screens;
- the colour imager: shot and read noise, saturation, vignetting, defocus, directional motion blur,
  rolling-shutter skew, JPEG; the IR imager: gain, response curve, vignetting, read noise.
"""

from __future__ import annotations

import functools
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration
from edge_fas.sim.domains import SPECIES
from edge_fas.sim.face_photo import PHOTO_ROWS
from edge_fas.sim.identity import IdentityParams, background_texture, identity_layers
from edge_fas.sim.presentations import Subject, _sheet, add_hands, build_atlas
from edge_fas.sim.ranges import CAMERA_BLOCK, IDENTITY_BLOCK, RangeSet, get_ranges
from edge_fas.sim.render import (Lighting, NoisePools, Pose, View, composite_color, plane_depth, prepare_atlas,
                                 shadow_band, trace_surface)
from edge_fas.sim.rig import _rotation, ground_truth
from edge_fas.types import DeviceInfo, FrameSet

EDGE_JUMP_M = 0.03  # a depth step larger than this between neighbours is an edge


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, parts)).encode()))


@functools.lru_cache(maxsize=2)
def _pools(shape: tuple[int, int]) -> NoisePools:
    return NoisePools(shape, 20260)


class Camera:
    """One drawn device: calibration, render views, emitter and sensor parameters."""

    def __init__(self, ranges: RangeSet, rng: np.random.Generator, width: int, height: int):
        d = lambda k: ranges.draw(rng, k)  # noqa: E731
        self.params = {}

        def take(k):
            self.params[k] = d(k)
            return self.params[k]

        s = width / 640.0

        def intrinsics(hfov, k1, k2, name) -> Intrinsics:
            f = (width / 2.0) / np.tan(np.radians(hfov) / 2.0)
            off = take("camera.principal_px") * s
            ang = rng.uniform(0, 2 * np.pi)
            fy = f * (1 + rng.uniform(-0.003, 0.003))
            cx, cy = width / 2.0 + off * np.cos(ang), height / 2.0 + off * np.sin(ang)
            k1, k2 = monotonic_radial(k1, k2, np.hypot(max(cx, width - cx) / f, max(cy, height - cy) / fy))
            return Intrinsics(width=width, height=height, fx=float(f), fy=float(fy), cx=float(cx), cy=float(cy),
                              model="brown_conrady" if (k1 or k2) else "none", coeffs=(k1, k2, 0.0, 0.0, 0.0))

        color = intrinsics(take("camera.color_hfov_deg"), take("camera.color_k1"), take("camera.color_k2"), "color")
        depth = intrinsics(take("camera.depth_hfov_deg"), take("camera.depth_k1"), 0.0, "depth")
        rot = _rotation(*(rng.uniform(-1, 1, 3) * take("camera.rotation_deg")))
        baseline = take("camera.baseline_m")
        side = -1.0 if rng.random() < 0.75 else 1.0  # most rigs put the depth camera left of colour
        trans = np.array([side * baseline, rng.uniform(-0.001, 0.001), rng.uniform(-0.001, 0.001)])
        d2c = Extrinsics(rot, trans)
        self.calibration = RigCalibration(color=color, depth=depth, ir=depth, depth_to_color=d2c, ir_to_color=d2c,
                                          depth_scale=0.001, source="synthetic")
        c2d = d2c.inverse()
        sharp = take("camera.color_sharpness")
        self.color_view = View(color.scaled(max(32, round(width * sharp)), max(24, round(height * sharp))), np.eye(3),
                               np.zeros(3))
        self.full_color_view = View(color, np.eye(3), np.zeros(3))
        res = take("camera.depth_resolution")
        self.depth_size = (max(32, round(width * res)), max(24, round(height * res)))
        self.depth_view = View(depth.scaled(*self.depth_size), c2d.R, c2d.t)
        self.full_depth_view = View(depth, c2d.R, c2d.t)
        self.size = (width, height)
        for k in ("camera.stereo_baseline_m", "emitter.pattern", "emitter.density", "emitter.dot_px",
                  "emitter.contrast", "emitter.power", "depth.disparity_noise_px", "depth.tof_noise_mm_per_m",
                  "depth.subpixel", "depth.blotch", "depth.hole_rate", "depth.edge_px", "depth.flying",
                  "depth.smoothing_px", "depth.min_m", "depth.max_m", "depth.dark_limit", "ir.gain", "ir.noise",
                  "ir.gamma", "ir.vignette", "ir.scatter_px", "color.noise", "color.gamma", "color.saturation",
                  "color.vignette", "color.defocus_px", "color.motion_blur_px", "color.rolling_shutter_px"):
            take(k)
        self.pattern = self._pattern(rng)
        self.color_lut = _gamma_lut(self.params["color.gamma"])
        self.ir_lut = _gamma_lut(self.params["ir.gamma"])
        self.color_vignette = _vignette((height, width), self.params["color.vignette"])
        w, h = self.depth_size
        self.ir_vignette = _vignette((h, w), self.params["ir.vignette"])

    @property
    def tof(self) -> bool:
        return self.params["emitter.pattern"] == "flood"

    def _pattern(self, rng) -> np.ndarray | None:
        """The emitter's pattern as the IR imager sees it on a flat wall (mean 1), wide enough to shift."""
        kind = self.params["emitter.pattern"]
        if kind in ("flood", "off"):
            return None
        w, h = self.depth_size
        shape = (h, w + 3 * NoisePools.PAD)
        density = self.params["emitter.density"]
        if kind == "structured":  # a pseudo-random pattern on a jittered grid (projector), a few brighter dots
            cell = max(1.0 / np.sqrt(density * 1.6), 1.5)
            gy, gx = np.mgrid[0:shape[0]:cell, 0:shape[1]:cell]
            px = (gx + rng.uniform(0, cell, gx.shape)).astype(int).ravel()
            py = (gy + rng.uniform(0, cell, gy.shape)).astype(int).ravel()
            ok = (px < shape[1]) & (py < shape[0])
            dots = np.zeros(shape, np.float32)
            dots[py[ok], px[ok]] = np.where(rng.random(ok.sum()) < 0.1, 2.0, 1.0)
        else:
            dots = (rng.random(shape) < density).astype(np.float32)
        dots = cv2.GaussianBlur(dots, (0, 0), self.params["emitter.dot_px"])
        return (dots / max(float(dots.mean()), 1e-6)).astype(np.float32)


def monotonic_radial(k1: float, k2: float, r_max: float, min_slope: float = 0.3) -> tuple[float, float]:
    """Radial terms scaled down (x0.8 at a time) until f(r) = r (1 + k1 r^2 + k2 r^4) rises with a slope of
    at least `min_slope` all the way to the image's farthest corner `r_max` (normalised, distorted): a
    real lens's mapping never folds back inside its image (a folded one has pixels with no ray), and near
    the fold the undistortion does not converge."""
    r = np.linspace(0.0, 4.0, 4001)
    for _ in range(40):
        f = r * (1.0 + k1 * r * r + k2 * r ** 4)
        slope = 1.0 + 3.0 * k1 * r * r + 5.0 * k2 * r ** 4
        inside = r <= (r[np.argmax(f >= r_max)] if (f >= r_max).any() else r[-1])
        if (f >= r_max).any() and slope[inside].min() >= min_slope:
            return float(k1), float(k2)
        k1, k2 = 0.8 * k1, 0.8 * k2
    return 0.0, 0.0


def _gamma_lut(gamma: float) -> np.ndarray:
    return np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)


def _vignette(shape, strength: float) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    return (1.0 - strength * 0.5 * r2).astype(np.float32)


@dataclass
class Scene:
    """Everything drawn for one sample except the camera."""

    species: str
    identity_id: int
    identity: IdentityParams
    materials: dict
    subject: Subject
    pose: Pose
    distance: float
    lighting: Lighting
    warmth: float
    ir_ambient: float
    exposure: float
    jpeg_quality: int | None
    background: dict
    hands: int
    cutout: bool
    phase: np.ndarray
    sway: float
    blur_angle: float
    params: dict


def draw_scene(ranges: RangeSet, seed: int, species: str, index: int) -> Scene:
    identity_id = int(index) // IDENTITY_BLOCK
    identity = IdentityParams.draw(ranges, _rng("identity", ranges.name, seed, identity_id))
    rng = _rng("sample", ranges.name, seed, species, index)
    params = {}

    def d(k):
        params[k] = ranges.draw(rng, k)
        return params[k]

    m = {}
    hands, cutout, bend = 0, False, 0.0
    if species in ("print", "paper_mask", "partial"):
        m.update(paper_white=d("print.paper_white"), paper_ir=d("print.paper_ir"), ink_ir_dark=d("print.ink_ir_dark"),
                 halftone=d("print.halftone"), halftone_period=d("print.halftone_period"),
                 print_desaturate=d("print.desaturate"),
                 print_margin_px=int(d("print.margin_px")), print_gloss=d("print.gloss"))
        m["ink_paper_ir"] = m["paper_ir"] - 0.02
        m["paper_mask_gloss"] = m["partial_gloss"] = m["print_gloss"]
        if species == "print":
            bend = 0.0 if rng.random() < d("print.flat_prob") else d("print.bend")
            cutout = bool(rng.random() < 0.15)
    elif species == "replay":
        moire = d("replay.moire")
        m.update(screen_ir=d("replay.ir"), screen_gamma=d("replay.gamma"), bezel_px=int(d("replay.bezel_px")),
                 bezel_gray=d("replay.bezel_gray"), screen_moire=moire, screen_level=(1.08 - moire) * d("replay.brightness"),
                 screen_glare=d("replay.glare"))
        m["screen_cast"] = tuple(float(v) for v in rng.uniform(0.88, 1.12, 3))
    elif species == "rigid_mask":
        m.update(resin_ir=d("rigid.ir"), resin_smooth_px=d("rigid.smooth_px"), resin_relief=d("rigid.relief"),
                 resin_standoff_m=d("rigid.standoff_m"), resin_gloss=d("rigid.gloss"),
                 resin_blur_px=d("rigid.paint_blur_px"), resin_contrast=d("rigid.paint_contrast"))
        m["resin_tint"] = tuple(float(v) for v in rng.uniform(-1, 1, 3) * d("rigid.paint_tint"))
    elif species == "flexible_mask":
        m.update(silicone_ir=d("silicone.ir_ratio") * identity.skin_ir, silicone_ir_texture=d("silicone.ir_texture"),
                 silicone_m=d("silicone.thickness_m"), silicone_smooth_px=d("silicone.smooth_px"),
                 silicone_seam=d("silicone.seam"), silicone_gloss=d("silicone.gloss"),
                 silicone_scatter=d("silicone.scatter"), silicone_desaturate=d("silicone.desaturate"))
        m["silicone_keep"] = 1.0 - m["silicone_desaturate"]
        m["silicone_tint"] = tuple(float(v) for v in rng.uniform(-1, 1, 3) * d("silicone.tint"))
    if species in ("print", "replay", "paper_mask") and rng.random() < d("hands.prob"):
        hands = int(d("hands.count"))
    distance = d("pose.distance_m")
    reach = d("pose.offset") * distance
    scale = d("replay.scale") if species == "replay" else 1.0
    ang = rng.uniform(0, 2 * np.pi)
    pose = Pose(x=float(reach * np.cos(ang)), y=float(0.6 * reach * np.sin(ang)), z=distance,
                yaw_deg=d("pose.yaw_deg"), pitch_deg=d("pose.pitch_deg"), roll_deg=d("pose.roll_deg"),
                scale_x=scale * identity.width, scale_y=scale * identity.height)
    lighting = Lighting(azimuth_deg=d("light.azimuth_deg"), elevation_deg=d("light.elevation_deg"),
                        ambient=d("light.ambient"), intensity=d("light.intensity"))
    jpeg = int(d("color.jpeg_quality")) if rng.random() < d("color.jpeg_prob") else None
    background = {"kind": d("background.kind"), "distance_m": distance + d("background.behind_m"),
                  "tilt_deg": d("background.tilt_deg"), "ir": d("background.ir"), "seed": int(rng.integers(2 ** 31))}
    subject = Subject(tone=1.0, relief_gain=1.0, smile=round(identity.smile, 3), brows=round(identity.brows, 3),
                      bend=bend)
    scene = Scene(species=species, identity_id=identity_id, identity=identity, materials=m, subject=subject, pose=pose,
                  distance=distance, lighting=lighting, warmth=d("light.warmth"), ir_ambient=d("light.ir_ambient"),
                  exposure=d("color.exposure"), jpeg_quality=jpeg, background=background, hands=hands, cutout=cutout,
                  phase=rng.uniform(0, 2 * np.pi, 3), sway=d("pose.sway"), blur_angle=float(rng.uniform(-30, 30)),
                  params=params)
    if species in ("rigid_mask", "paper_mask", "flexible_mask"):  # drawn last: every draw above stays as it was
        m["mask_hair_over"] = d("mask.hair_over")  # (m and params are the scene's own dicts)
    # the medium's lightness, drawn after everything else so every earlier draw stays as it was. Without them
    # every printed and worn medium rendered lighter than skin at every skin tone (bench_colour_stats.py), a cue
    # that follows skin tone, not physics.
    if species in ("print", "paper_mask", "partial"):
        m.update(print_black=d("print.ink_black"), print_white=m["paper_white"], print_lightness=d("print.lightness"))
    elif species == "rigid_mask":
        m["resin_lightness"] = d("rigid.paint_lightness")
    elif species == "flexible_mask":
        m["silicone_lightness"] = d("silicone.lightness")
    return scene


class RandomizedRig:
    """A rig of the randomised family; the same interface as edge_fas.sim.Rig (see the module docstring)."""

    def __init__(self, domain: str = "rand", seed: int = 0, width: int = 640, height: int = 480, emitter: bool = True,
                 fixed_camera: bool = False, ranges: RangeSet | None = None):
        self.ranges = ranges if ranges is not None else get_ranges(domain)
        self.domain_name = self.ranges.name
        self.seed = int(seed)
        self.width, self.height = int(width), int(height)
        self.emitter = bool(emitter)
        self.fixed_camera = bool(fixed_camera)
        self._cameras: OrderedDict = OrderedDict()
        self._atlases: OrderedDict = OrderedDict()
        self._walls: OrderedDict = OrderedDict()
        self.device = DeviceInfo(model="edge-fas synthetic rig (randomised)", serial=f"SIM-{self.domain_name}-{seed}",
                                 firmware="sim-1", driver="synthetic")

    @property
    def calibration(self) -> RigCalibration:
        """The calibration of sample 0's camera (every sample's own is on its FrameSet)."""
        return self.camera(0).calibration

    def camera(self, index: int) -> Camera:
        cam_id = 0 if self.fixed_camera else int(index) // CAMERA_BLOCK
        if cam_id not in self._cameras:
            if len(self._cameras) >= 4:
                self._cameras.popitem(last=False)
            self._cameras[cam_id] = Camera(self.ranges, _rng("camera", self.ranges.name, self.seed, cam_id),
                                           self.width, self.height)
        self._cameras.move_to_end(cam_id)
        return self._cameras[cam_id]

    def sample(self, species: str, index: int) -> Scene:
        if species not in SPECIES:
            from edge_fas.errors import ConfigError

            raise ConfigError(f"synthetic species {species!r} is unknown; expected one of {', '.join(SPECIES)}")
        return draw_scene(self.ranges, self.seed, species, int(index))

    def _prepared(self, scene: Scene, index: int):
        key = (scene.species, int(index))
        if key not in self._atlases:
            if len(self._atlases) >= 8:
                self._atlases.popitem(last=False)
            person = identity_layers(scene.identity)
            atlas = build_atlas(scene.species, scene.subject, person=person, materials=scene.materials)
            if scene.cutout:  # a print cut out along the person's outline
                atlas.alpha = _sheet(person.alpha[:PHOTO_ROWS], (atlas.alpha.shape[0] - PHOTO_ROWS) // 2, 0.0)
            if scene.hands:
                from edge_fas.sim.identity import skin_color

                rng = _rng("hands", self.ranges.name, self.seed, index)
                attacker = skin_color(rng.uniform(0, 1), rng.uniform(-1, 1))
                atlas = add_hands(atlas, rng, scene.hands, attacker, float(rng.uniform(0.45, 0.75)))
            self._atlases[key] = prepare_atlas(atlas)
        self._atlases.move_to_end(key)
        return self._atlases[key]

    def pose_at(self, scene: Scene, t: float) -> tuple[Pose, float]:
        p, a = scene.pose, scene.sway
        w = 2 * np.pi * np.array([1 / 4.0, 1 / 5.0, 1 / 3.0])
        args = w * t + scene.phase
        pose = replace(p, x=p.x + 0.012 * a * np.sin(args[2]), y=p.y + 0.006 * a * np.sin(args[1]),
                       yaw_deg=p.yaw_deg + 5.0 * a * np.sin(args[0]), pitch_deg=p.pitch_deg + 3.0 * a * np.sin(args[1]))
        speed = a * float(abs(np.cos(args[0])) + abs(np.cos(args[2])))  # 0..2
        return pose, speed

    def render(self, species: str, index: int, t: float = 0.0, emitter_on: bool | None = None,
               pose: Pose | None = None) -> FrameSet:
        scene = self.sample(species, index)
        cam = self.camera(index)
        if pose is None:
            pose, speed = self.pose_at(scene, float(t))
        else:
            speed, scene.distance = 0.0, float(pose.z)
        emitter_on = self.emitter if emitter_on is None else bool(emitter_on)
        rng = _rng("frame", self.ranges.name, self.seed, species, index, round(t * 1000))
        prepared = self._prepared(scene, index)
        walls = self._wall(scene, cam, index)
        rgb = self._render_color(cam, prepared, pose, walls, scene, speed, rng)
        depth, ir = self._render_depth_ir(cam, prepared, pose, walls, scene, emitter_on, rng)
        truth = ground_truth(species, prepared, pose, scene.distance, scene.identity_id, self.domain_name,
                             cam.full_color_view, cam.full_depth_view, (self.width, self.height))
        stamp = float(t) * 1000.0
        scene_params = {**cam.params, **scene.params, "identity.source": scene.identity.source}
        return FrameSet(rgb=rgb, depth=depth, ir=ir, depth_scale=0.001,
                        timestamps={"rgb": stamp, "depth": stamp, "ir": stamp}, counters={}, registered=False,
                        device=self.device, calibration=cam.calibration, truth=truth,
                        meta={"emitter_on": emitter_on, "sim": {"index": int(index), "t": float(t),
                                                                "identity": scene.identity_id, "pose": asdict(pose),
                                                                "scene": scene_params}})

    # -- parts --------------------------------------------------------------------------------------

    def _wall(self, scene: Scene, cam: Camera, index: int):
        """The background wall: depth in both cameras, colour planes and near-IR albedo (cached per sample)."""
        key = (id(cam), scene.species, int(index))
        if key not in self._walls:
            if len(self._walls) >= 8:
                self._walls.popitem(last=False)
            bg = scene.background
            vc, vd = cam.color_view, cam.depth_view
            tex = background_texture(np.random.default_rng(bg["seed"]), vc.shape, bg["kind"]) * 255.0
            ir_tex = cv2.resize(tex[..., 1], (vd.shape[1], vd.shape[0])) / max(float(tex[..., 1].mean()), 1.0)
            self._walls[key] = (plane_depth(vc, bg["distance_m"], bg["tilt_deg"]),
                                plane_depth(vd, bg["distance_m"], bg["tilt_deg"]),
                                [np.ascontiguousarray(c) for c in cv2.split(tex.astype(np.float32))],
                                (bg["ir"] * np.clip(0.7 + 0.3 * ir_tex, 0.2, 1.6)).astype(np.float32))
        self._walls.move_to_end(key)
        return self._walls[key]

    def _render_color(self, cam: Camera, prepared, pose, walls, scene: Scene, speed: float, rng) -> np.ndarray:
        p = cam.params
        view = cam.color_view
        wall_z, _, wall_planes, _ = walls
        w = scene.warmth
        gains = np.array([1.0 + w, 1.0, 1.0 - w]) * scene.exposure
        image = composite_color(view, prepared, pose, wall_z, wall_planes, scene.lighting, gains)
        if view.shape != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        s = self.width / 640.0
        if p["color.defocus_px"] * s > 0.3:
            image = cv2.GaussianBlur(image, (0, 0), p["color.defocus_px"] * s)
        length = int(round(p["color.motion_blur_px"] * speed * s))
        if length >= 2:
            k = np.zeros((length, length), np.float32)
            c = (length - 1) / 2.0
            t = np.radians(scene.blur_angle)
            cv2.line(k, (int(round(c - c * np.cos(t))), int(round(c - c * np.sin(t)))),
                     (int(round(c + c * np.cos(t))), int(round(c + c * np.sin(t)))), 1.0, 1)
            image = cv2.filter2D(image, -1, k / k.sum())
        skew = p["color.rolling_shutter_px"] * speed * s * np.sign(np.sin(scene.phase[0]))
        if abs(skew) >= 0.5:  # rows read out top to bottom while the head moves sideways
            m = np.float32([[1, skew / self.height, -skew / 2], [0, 1, 0]])
            image = cv2.warpAffine(image, m, (self.width, self.height), borderMode=cv2.BORDER_REPLICATE)
        # per plane from here (numpy's broadcasting over a third axis is several times slower)
        planes = cv2.split(image)
        lum = (planes[0] + planes[1] + planes[2]) * np.float32(1.0 / 3.0)
        sat = np.float32(p["color.saturation"])
        pools = _pools((self.height, self.width))
        # shot noise grows with the signal, read noise with the gain (exposure)
        k = np.float32(p["color.noise"] * np.sqrt(scene.exposure) / 8.0)
        out = []
        for c in planes:
            c = (lum + sat * (c - lum)) * cam.color_vignette
            out.append(c + k * np.sqrt(np.maximum(c, np.float32(1.0))) * pools.slice(pools.white, rng))
        rgb = cv2.LUT(np.clip(cv2.merge(out), 0, 255).astype(np.uint8), cam.color_lut)
        if scene.jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, scene.jpeg_quality])
            rgb = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return rgb

    def _render_depth_ir(self, cam: Camera, prepared, pose, walls, scene: Scene, emitter_on: bool, rng):
        p = cam.params
        view = cam.depth_view
        _, wall_z, _, wall_ir = walls
        h, w = view.shape
        pools = _pools((h, w))
        surface = trace_surface(view, prepared, pose)
        border = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        g = cv2.remap(prepared.geometry, surface.map_x, surface.map_y, cv2.INTER_LINEAR, **border)
        _, g_albedo, g_specular, g_alpha = cv2.split(g)
        fg = (g_alpha > 0.5) & (surface.z < wall_z)
        fgf = fg.astype(np.float32)
        z = wall_z + fgf * (surface.z - wall_z)
        albedo = wall_ir + fgf * (g_albedo - wall_ir)
        fx = view.intrinsics.fx
        stereo_b = p["camera.stereo_baseline_m"]
        # IR: emitter light falls off as 1/z^2 and carries the pattern (shifted by the disparity, blurred in
        # scattering materials); ambient near-IR is flat. Auto-exposure keeps the emitter return near 1.
        radiance = np.float32(scene.ir_ambient + (0.0 if emitter_on else 0.08))
        if emitter_on:
            falloff = np.float32(scene.distance ** 2) / (z * z) * np.float32(p["emitter.power"])
            pattern = np.float32(1.0)
            if cam.pattern is not None:
                shift = int(fx * stereo_b / max(scene.distance, 0.1)) % (3 * NoisePools.PAD)
                sharp = cam.pattern[:h, shift:shift + w]
                if prepared.scatter is not None:
                    scatter = cv2.remap(prepared.scatter, surface.map_x, surface.map_y, cv2.INTER_LINEAR, **border) * fgf
                    sigma = p["ir.scatter_px"] * (w / 640.0) * 0.5 / max(scene.distance, 0.2) * (fx / (w * 0.8))
                    soft = cv2.GaussianBlur(sharp, (0, 0), max(sigma, 0.3))
                    sharp = sharp + scatter * (soft - sharp)
                c = np.float32(p["emitter.contrast"])
                pattern = (1 - c) + c * sharp
            radiance = radiance + falloff * pattern
        ir = albedo * radiance * np.float32(200.0 * p["ir.gain"]) * cam.ir_vignette
        ir += np.float32(p["ir.noise"]) * pools.slice(pools.white, rng)
        ir8 = cv2.LUT(np.clip(ir, 0, 255).astype(np.uint8), cam.ir_lut)

        # depth
        white, low = pools.slice(pools.white, rng), pools.slice(pools.low, rng)
        noise = np.float32(0.8) * white + np.float32(p["depth.blotch"]) * low
        if cam.tof:
            noisy = z + np.float32(p["depth.tof_noise_mm_per_m"] * 1e-3) * z * noise
        else:  # triangulation: noise and quantisation in disparity
            fb = np.float32(fx * stereo_b)
            disp = fb / z + np.float32(p["depth.disparity_noise_px"]) * noise
            step = np.float32(1.0 / p["depth.subpixel"])
            disp = np.maximum(np.round(disp / step) * step, step)
            noisy = fb / disp
        if p["depth.smoothing_px"] > 0.3:  # the camera's spatial filter, within surfaces only
            sm = cv2.GaussianBlur(noisy, (0, 0), p["depth.smoothing_px"])
            noisy = np.where(np.abs(sm - noisy) < 0.02, sm, noisy)
        invalid = (z < p["depth.min_m"]) | (z > p["depth.max_m"])
        k = np.ones((3, 3), np.uint8)
        grad = cv2.morphologyEx(z, cv2.MORPH_GRADIENT, k)
        edges = (grad > EDGE_JUMP_M).astype(np.uint8)
        edge_px = int(round(p["depth.edge_px"]))
        if edge_px > 1:
            edges = cv2.dilate(edges, np.ones((edge_px, edge_px), np.uint8))
        u, u2 = pools.slice(pools.uniform, rng), pools.slice(pools.uniform, rng)
        edge = edges > 0
        flying = edge & (u < p["depth.flying"] * (2.0 if cam.tof else 1.0))
        if flying.any():  # mixed pixels: somewhere between the near and the far surface
            near, far = cv2.erode(z, k), cv2.dilate(z, k)
            noisy = np.where(flying, near + u2 * (far - near), noisy)
        invalid |= edge & ~flying
        if not cam.tof:
            wall_mean = float(wall_z[h // 2, w // 2])
            shadow_px = int(fx * stereo_b * max(0.0, 1.0 / scene.distance - 1.0 / wall_mean))
            band = shadow_band(fg, shadow_px) if p["emitter.pattern"] != "structured" \
                else shadow_band(fg[:, ::-1], shadow_px)[:, ::-1]  # the projector sits on the other side
            invalid |= band
        dark_limit = np.float32(p["depth.dark_limit"] * (0.5 if cam.tof else (1.0 if emitter_on else 2.0)))
        invalid |= u < (dark_limit - ir) * (np.float32(0.85) / dark_limit)
        invalid |= g_specular * fgf > u2 + np.float32(0.15)
        invalid |= u2 < p["depth.hole_rate"]
        depth = (np.clip(noisy * np.float32(1000.0) + np.float32(0.5), 0, 65535) * ~invalid).astype(np.uint16)
        if (w, h) != (self.width, self.height):
            depth = cv2.resize(depth, (self.width, self.height), interpolation=cv2.INTER_NEAREST)
            ir8 = cv2.resize(ir8, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return depth, ir8
