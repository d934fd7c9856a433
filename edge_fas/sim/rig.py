"""The synthetic RGB-D-IR rig: a seeded scenario in, raw unregistered frame sets and their truth out.

    rig = Rig(domain="cefa", seed=0)
    frames = rig.render("print", index=3, t=0.5)   # FrameSet: rgb, depth (uint16 mm), ir (uint8)
    frames.truth.label, frames.truth.face_box     # 1 (attack), box in colour pixels

`index` picks the sample (subject, pose, distance, light, wall); `t` (seconds) animates small head or
hand motion within it. Everything is deterministic in (domain, seed, species, index, t).

The rig: colour camera at the origin (world frame = colour camera); a depth camera with its own
intrinsics and wider field of view, offset by the domain's baseline (15-50 mm) and turned by a few
tenths of a degree, so registration has real work to do; the IR imager is the depth imager (same
intrinsics, identity transform), as on a RealSense D4xx.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from dataclasses import asdict

import cv2
import numpy as np

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration
from edge_fas.sim.domains import DOMAINS, SPECIES, Domain, get_domain
from edge_fas.sim.presentations import Atlas, Subject, build_atlas
from edge_fas.sim.render import (Lighting, NoisePools, Pose, PreparedAtlas, View, composite_color, plane_depth,
                                 prepare_atlas, shadow_band, trace_surface)
from edge_fas.types import DeviceInfo, FrameSet, GroundTruth

DISTANCE_RANGE_M = (0.35, 1.2)
STEREO_BASELINE_M = 0.05  # between the two IR imagers of an active-stereo depth camera


SUBJECTS_PER_DOMAIN = 6  # identities per domain (the face photo varied); sample index % 6 picks one


@functools.lru_cache(maxsize=48)  # ~12 MB each; 7 species x 6 subjects of one domain fit
def _prepared(species: str, subject: Subject) -> PreparedAtlas:
    if species != "print":
        subject = Subject(subject.tone, subject.relief_gain, subject.smile, subject.brows, 0.0)  # bend is print-only
    atlas = build_atlas(species, subject)
    atlas.scatter = None  # the named domains do not render subsurface scattering: keep the cache small
    return prepare_atlas(atlas)


def _subject_pool(domain: Domain, seed: int) -> list[Subject]:
    rng = np.random.default_rng(_stable_hash("subjects", seed, domain.name))
    pool = []
    for k in range(SUBJECTS_PER_DOMAIN):
        pool.append(Subject(
            tone=float(domain.skin_tones[k % len(domain.skin_tones)]),
            relief_gain=round(float(rng.uniform(0.9, 1.15)), 3),
            smile=round(float(rng.uniform(0.2, 1.0)), 2) if k % 2 else 0.0,
            brows=round(float(rng.uniform(0.3, 1.0)), 2) if k % 3 == 2 else 0.0,
            bend=round(float(rng.choice([-1, 1]) * rng.uniform(2.0, 4.0)), 2) if k % 2 == 0 else 0.0))
    return pool


def _stable_hash(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    rx, ry, rz = np.radians([rx_deg, ry_deg, rz_deg])
    mx = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    my = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    mz = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    return mx @ my @ mz


class Sample:
    """The per-index draw: who, where, under which light, in front of which wall."""

    def __init__(self, domain: Domain, seed: int, species: str, index: int):
        rng = np.random.default_rng(_stable_hash(seed, domain.name, species, index))
        subject = _subject_pool(domain, seed)[int(index) % SUBJECTS_PER_DOMAIN]
        if species != "print":
            subject = Subject(subject.tone, subject.relief_gain, subject.smile, subject.brows, 0.0)
        self.subject_id = int(index) % SUBJECTS_PER_DOMAIN
        self.subject = subject
        self.distance = float(rng.uniform(*DISTANCE_RANGE_M))
        reach = 0.18 * self.distance
        scale = 0.9 if species == "replay" else 1.0  # a screen shows the face a little under life size
        self.pose = Pose(x=float(rng.uniform(-reach, reach)), y=float(rng.uniform(-0.6 * reach, 0.6 * reach)),
                         z=self.distance, yaw_deg=float(rng.uniform(-25, 25)), pitch_deg=float(rng.uniform(-15, 15)),
                         roll_deg=float(rng.uniform(-10, 10)),
                         scale_x=scale * float(rng.uniform(0.93, 1.07)), scale_y=scale * float(rng.uniform(0.95, 1.05)))
        spread = domain.light_spread_deg
        self.lighting = Lighting(azimuth_deg=float(rng.uniform(-spread, spread)),
                                 elevation_deg=float(rng.uniform(-0.5 * spread, spread)),
                                 ambient=float(rng.uniform(*domain.ambient)), intensity=float(rng.uniform(0.85, 1.15)))
        self.exposure = float(rng.uniform(*domain.exposure))
        self.wall_m = float(rng.uniform(*domain.wall_m))
        self.wall_tilt = float(rng.uniform(-15, 15))
        self.phase = rng.uniform(0, 2 * np.pi, 3)
        self.sway = float(rng.uniform(0.3, 1.0))  # how much this person (or attacker's hand) moves

    def pose_at(self, t: float) -> tuple[Pose, float]:
        """The pose at time t and the head's image-plane speed factor (for motion blur)."""
        p, a = self.pose, self.sway
        w = 2 * np.pi * np.array([1 / 4.0, 1 / 5.0, 1 / 3.0])
        args = w * t + self.phase
        pose = Pose(x=p.x + 0.012 * a * np.sin(args[2]), y=p.y + 0.006 * a * np.sin(args[1]), z=p.z,
                    yaw_deg=p.yaw_deg + 5.0 * a * np.sin(args[0]), pitch_deg=p.pitch_deg + 3.0 * a * np.sin(args[1]),
                    roll_deg=p.roll_deg, scale_x=p.scale_x, scale_y=p.scale_y)
        speed = a * float(abs(np.cos(args[0])) + abs(np.cos(args[2])))  # 0..2
        return pose, speed


class Rig:
    """A seeded synthetic rig for one domain. See the module docstring."""

    def __init__(self, domain: str = DOMAINS[0], seed: int = 0, width: int = 640, height: int = 480,
                 emitter: bool = True):
        self.domain = get_domain(domain)
        self.seed = int(seed)
        self.width, self.height = int(width), int(height)
        self.emitter = bool(emitter)
        d = self.domain
        rng = np.random.default_rng(_stable_hash("rig", seed, d.name))

        def intrinsics(hfov_deg: float, jitter: float) -> Intrinsics:
            f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0) * (1.0 + rng.uniform(-jitter, jitter))
            return Intrinsics(width=width, height=height, fx=float(f), fy=float(f * (1.0 + rng.uniform(-0.003, 0.003))),
                              cx=float(width / 2.0 + rng.uniform(-8, 8)), cy=float(height / 2.0 + rng.uniform(-6, 6)))

        color = intrinsics(d.color_hfov_deg, 0.02)
        depth = intrinsics(d.depth_hfov_deg, 0.02)
        rot = _rotation(*rng.uniform(-0.4, 0.4, 3))
        trans = np.array([-d.baseline_m, rng.uniform(-0.0008, 0.0008), rng.uniform(-0.0008, 0.0008)])
        depth_to_color = Extrinsics(rot, trans)
        self.calibration = RigCalibration(color=color, depth=depth, ir=depth, depth_to_color=depth_to_color,
                                          ir_to_color=depth_to_color, depth_scale=0.001, source="synthetic")
        color_to_depth = depth_to_color.inverse()
        render_w, render_h = max(32, round(width * d.color_scale)), max(24, round(height * d.color_scale))
        self.color_view = View(color.scaled(render_w, render_h), np.eye(3), np.zeros(3))
        self.full_color_view = View(color, np.eye(3), np.zeros(3))
        self.depth_view = View(depth, color_to_depth.R, color_to_depth.t)
        self.pools = NoisePools((height, width), _stable_hash("pools", seed, d.name))
        self.device = DeviceInfo(model="edge-fas synthetic rig", serial=f"SIM-{d.name}", firmware="sim-1",
                                 driver="synthetic")
        self._walls: dict = {}

    # -- public -------------------------------------------------------------------------------------

    def sample(self, species: str, index: int) -> Sample:
        if species not in SPECIES:
            from edge_fas.errors import ConfigError

            raise ConfigError(f"synthetic species {species!r} is unknown; expected one of {', '.join(SPECIES)}")
        return Sample(self.domain, self.seed, species, int(index))

    def render(self, species: str, index: int, t: float = 0.0, emitter_on: bool | None = None,
               pose: Pose | None = None) -> FrameSet:
        """Raw, unregistered colour, depth and IR of sample `index` of `species` at time `t` (seconds).

        pose: place the presentation explicitly (tests, calibration targets) instead of the sample's pose."""
        sample = self.sample(species, index)
        if pose is None:
            pose, speed = sample.pose_at(float(t))
        else:
            speed = 0.0
            sample.distance = float(pose.z)
        emitter_on = self.emitter if emitter_on is None else bool(emitter_on)
        frame_rng = np.random.default_rng(_stable_hash(self.seed, self.domain.name, species, index, round(t * 1000)))
        prepared = _prepared(species, sample.subject)
        wall_c, wall_d = self._wall(sample)

        rgb = self._render_color(prepared, pose, wall_c, sample, speed, frame_rng)
        depth, ir = self._render_depth_ir(prepared, pose, wall_d, sample, emitter_on, frame_rng)
        truth = self._truth(species, prepared, pose, sample)
        stamp = float(t) * 1000.0
        return FrameSet(rgb=rgb, depth=depth, ir=ir, depth_scale=0.001,
                        timestamps={"rgb": stamp, "depth": stamp, "ir": stamp}, counters={},
                        registered=False, device=self.device, calibration=self.calibration, truth=truth,
                        meta={"emitter_on": emitter_on, "sim": {"index": int(index), "t": float(t),
                                                                "subject": asdict(sample.subject),
                                                                "pose": asdict(pose)}})

    # -- parts --------------------------------------------------------------------------------------

    def _wall(self, sample: Sample):
        key = (round(sample.wall_m, 3), round(sample.wall_tilt, 2))
        if key not in self._walls:
            if len(self._walls) > 16:
                self._walls.clear()
            self._walls[key] = (plane_depth(self.color_view, sample.wall_m, sample.wall_tilt),
                                plane_depth(self.depth_view, sample.wall_m, sample.wall_tilt))
        return self._walls[key]

    def _wall_texture(self, shape) -> np.ndarray:
        key = ("texture",) + tuple(shape)
        if key not in self._walls:
            rng = np.random.default_rng(_stable_hash("wall", self.seed, self.domain.name))
            h, w = shape
            tex = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 25.0)
            tex = 1.0 + 0.08 * tex / (tex.std() + 1e-6)
            gray = np.array(self.domain.wall_gray, np.float32) * 255.0
            self._walls[key] = (tex[..., None] * gray).astype(np.float32)
        return self._walls[key]

    def _gamma_lut(self) -> np.ndarray | None:
        if self.domain.gamma == 1.0:
            return None
        if "gamma" not in self._walls:
            self._walls["gamma"] = np.clip(255.0 * (np.arange(256) / 255.0) ** self.domain.gamma, 0, 255).astype(np.uint8)
        return self._walls["gamma"]

    def _render_color(self, prepared, pose, wall_z, sample, speed, rng) -> np.ndarray:
        d = self.domain
        view = self.color_view
        gains = np.array(d.white_balance) * sample.exposure
        image = composite_color(view, prepared, pose, wall_z, self._wall_planes(view.shape), sample.lighting, gains)
        if view.shape != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        blur = int(round(d.motion_blur_px * speed))
        if blur >= 2:
            image = cv2.blur(image, (blur, 1))
        image += np.float32(d.color_noise) * self.pools.slice(self.pools.color, rng)
        rgb = np.clip(image, 0, 255).astype(np.uint8)
        lut = self._gamma_lut()
        return cv2.LUT(rgb, lut) if lut is not None else rgb

    def _render_depth_ir(self, prepared, pose, wall_z, sample, emitter_on, rng):
        d = self.domain
        view = self.depth_view
        surface = trace_surface(view, prepared, pose)
        g = cv2.remap(prepared.geometry, surface.map_x, surface.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=(0, 0, 0, 0))
        _, g_albedo, g_specular, g_alpha = cv2.split(g)
        fg = (g_alpha > 0.5) & (surface.z < wall_z)
        fgf = fg.astype(np.float32)
        z = wall_z + fgf * (surface.z - wall_z)
        wall_albedo = self._wall_ir(view.shape)
        albedo = wall_albedo + fgf * (g_albedo - wall_albedo)
        # IR: the emitter's light falls off with z^2 and carries the dot pattern (shifted by the disparity
        # of the subject's distance); ambient near-IR is flat. Auto-exposure keeps the subject's emitter
        # return near 1 whatever its distance.
        radiance = np.float32(d.ir_ambient + (0.0 if emitter_on else 0.08))
        if emitter_on:
            shift = int(view.intrinsics.fx * STEREO_BASELINE_M / max(sample.distance, 0.1)) % (3 * NoisePools.PAD)
            dots = self.pools.dots[:view.shape[0], shift:shift + view.shape[1]]
            falloff = np.float32(sample.distance ** 2) / (z * z)
            radiance = radiance + falloff * (np.float32(0.35) + np.float32(0.65) * dots)
        ir = albedo * radiance * np.float32(200.0 * d.ir_gain)
        ir += np.float32(d.ir_noise) * self.pools.slice(self.pools.white, rng)
        ir8 = np.clip(ir, 0, 255).astype(np.uint8)

        # depth: noise grows with z^2; then every reason a pixel gets no measurement
        sigma = np.float32(d.noise_mm_per_m2 * 1e-3) * z * z
        noisy = z + sigma * (np.float32(0.8) * self.pools.slice(self.pools.white, rng)
                             + np.float32(0.6) * self.pools.slice(self.pools.low, rng))
        invalid = (z < d.depth_min_m) | (z > d.depth_max_m)
        grad = cv2.morphologyEx(z, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        edges = (grad > 0.03).astype(np.uint8)  # depth discontinuities: mixed pixels are dropped
        if d.edge_hole_px > 1:
            edges = cv2.dilate(edges, np.ones((d.edge_hole_px, d.edge_hole_px), np.uint8))
        invalid |= edges > 0
        wall_mean = float(wall_z[wall_z.shape[0] // 2, wall_z.shape[1] // 2])
        shadow_px = int(view.intrinsics.fx * STEREO_BASELINE_M * max(0.0, 1.0 / sample.distance - 1.0 / wall_mean))
        invalid |= shadow_band(fg, shadow_px)
        u = self.pools.slice(self.pools.uniform, rng)
        u2 = self.pools.slice(self.pools.uniform, rng)
        dark_limit = np.float32(14.0 if emitter_on else 30.0)  # stereo needs texture: dark surfaces fail
        invalid |= u < (dark_limit - ir) * (np.float32(0.85) / dark_limit)
        invalid |= g_specular * fgf > u2 + np.float32(0.15)  # specular surfaces
        invalid |= u2 < d.hole_rate
        depth = np.clip(noisy * np.float32(1000.0) + np.float32(0.5), 0, 65535) * ~invalid
        depth = depth.astype(np.uint16)
        return depth, ir8

    def _wall_planes(self, shape) -> list[np.ndarray]:
        key = ("planes",) + tuple(shape)
        if key not in self._walls:
            self._walls[key] = list(cv2.split(self._wall_texture(shape)))
        return self._walls[key]

    def _wall_ir(self, shape) -> np.ndarray:
        key = ("ir",) + tuple(shape)
        if key not in self._walls:
            tex = self._wall_texture(shape)[..., 1] / 255.0 / max(self.domain.wall_gray[1], 1e-3)
            self._walls[key] = (0.45 * tex).astype(np.float32)
        return self._walls[key]

    def _truth(self, species, prepared, pose, sample) -> GroundTruth:
        return ground_truth(species, prepared, pose, sample.distance, sample.subject_id, self.domain.name,
                            self.full_color_view, self.depth_view, (self.width, self.height))


def ground_truth(species, prepared, pose, distance, subject_id, domain, color_view, depth_view, size) -> GroundTruth:
    """Label, face box and keypoints (colour and depth pixels) of a rendered presentation."""
    width, height = size
    atlas = prepared.atlas
    outline = atlas.landmarks["face_outline"]
    pts = pose.atlas_to_world(atlas, outline, np.full(len(outline), atlas.face_height * 0.6))
    xy = color_view.project(pts)
    x0, y0 = np.floor(xy.min(0)).astype(int)
    x1, y1 = np.ceil(xy.max(0)).astype(int)
    box = (int(max(0, x0)), int(max(0, y0)), int(min(width, x1)), int(min(height, y1)))
    names = ("eye_right", "eye_left", "nose", "mouth", "cheek_right", "cheek_left")
    marks = np.array([atlas.landmarks[n] for n in names], np.float64)
    heights = [float(prepared.height[int(round(m[1])), int(round(m[0]))]) for m in marks]
    world = pose.atlas_to_world(atlas, marks, heights)
    kp = color_view.project(world)
    kp_depth = depth_view.project(world)
    return GroundTruth(label=0 if species == "bona_fide" else 1, species=species, domain=domain,
                       face_box=box, distance_m=round(distance, 4),
                       extra={"subject": subject_id, "keypoints": {n: [round(float(v), 2) for v in p] for n, p in zip(names, kp)},
                              "keypoints_depth": {n: [round(float(v), 2) for v in p] for n, p in zip(names, kp_depth)},
                              "yaw_deg": pose.yaw_deg, "pitch_deg": pose.pitch_deg})


def rig_fingerprint(rig: Rig) -> str:
    """A short hash of a rig's calibration, for recordings and tests."""
    return hashlib.sha256(repr(rig.calibration.to_dict()).encode()).hexdigest()[:12]
