"""The synthetic rig's named domains: sensor, lighting and attack-mix settings grouped like the four
public multimodal dataset families, so leave-one-domain-out protocols have real shifts to cross.

Each domain stands for one family; the numbers are plausible for that family's sensors, not fitted:
- "surf":   CASIA-SURF-like. Short-range structured-light camera (SR300 class): low-resolution,
            soft colour, 25 mm baseline, short depth range (the wall falls out of range), print
            attacks dominate.
- "cefa":   CASIA-SURF CeFA-like. Active-stereo D4xx class, 15 mm baseline, varied skin tones,
            prints, replays and rigid/silicone masks, mixed indoor light.
- "wmca":   WMCA / HQ-WMCA-like. Studio lighting, high-quality colour, 35 mm baseline, the widest
            attack mix (masks, partial attacks, prints, replays).
- "padisi": PADISI-Face-like. Bright, cool light, strong ambient near-IR (daylight through a
            window), 48 mm baseline, noisier depth, many mask types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_fas.labels import ATTACK_SPECIES, SPECIES  # noqa: F401 - one vocabulary for the rig, record and collect


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    # rig geometry
    baseline_m: float  # colour-to-depth translation along x (15-50 mm)
    color_hfov_deg: float
    depth_hfov_deg: float
    depth_min_m: float
    depth_max_m: float
    wall_m: tuple[float, float]  # background wall distance range
    # depth sensor: sigma(z) = noise_mm_per_m2 * z^2 (mm), plus holes
    noise_mm_per_m2: float
    hole_rate: float  # random small drop-outs, fraction of pixels
    edge_hole_px: int  # dilation of the invalid band at depth edges
    # colour sensor
    color_scale: float  # < 1 renders colour at lower resolution then upsamples (soft optics)
    color_noise: float  # std of read noise in 8-bit units
    white_balance: tuple[float, float, float]  # per-channel gains R, G, B
    exposure: tuple[float, float]  # gain range
    gamma: float
    motion_blur_px: float  # blur length per unit of head speed (0 = sharp shutter)
    # light
    ambient: tuple[float, float]  # ambient fraction range
    light_spread_deg: float  # how far off-axis the key light wanders
    ir_ambient: float  # near-IR ambient (sunlight) relative to the emitter at 0.5 m
    ir_gain: float
    ir_noise: float
    # subjects
    skin_tones: tuple[float, ...]  # skin tone multipliers (1 = the photo's own tone)
    wall_gray: tuple[float, float, float]
    # attack mix: relative weights over ATTACK_SPECIES when a protocol samples attacks
    attack_weights: dict = field(default_factory=dict)

    def attack_probabilities(self) -> dict[str, float]:
        total = sum(self.attack_weights.get(s, 0.0) for s in ATTACK_SPECIES)
        return {s: self.attack_weights.get(s, 0.0) / total for s in ATTACK_SPECIES}


DOMAIN_TABLE: dict[str, Domain] = {
    "surf": Domain(
        name="surf", description="CASIA-SURF-like: SR300-class structured light, low-res colour, prints",
        baseline_m=0.025, color_hfov_deg=62.0, depth_hfov_deg=70.0, depth_min_m=0.2, depth_max_m=1.5,
        wall_m=(1.8, 2.6), noise_mm_per_m2=4.0, hole_rate=0.01, edge_hole_px=3,
        color_scale=0.5, color_noise=3.0, white_balance=(1.05, 1.0, 0.88), exposure=(0.85, 1.05),
        gamma=1.0, motion_blur_px=6.0, ambient=(0.35, 0.5), light_spread_deg=25.0, ir_ambient=0.05,
        ir_gain=1.0, ir_noise=3.0, skin_tones=(0.85, 1.0, 1.1),
        wall_gray=(0.55, 0.55, 0.5),
        attack_weights={"print": 6, "replay": 1, "paper_mask": 2, "partial": 1}),
    "cefa": Domain(
        name="cefa", description="CeFA-like: D4xx-class active stereo, varied skin tones, mixed light",
        baseline_m=0.015, color_hfov_deg=69.0, depth_hfov_deg=87.0, depth_min_m=0.25, depth_max_m=4.0,
        wall_m=(2.0, 3.0), noise_mm_per_m2=2.0, hole_rate=0.004, edge_hole_px=2,
        color_scale=1.0, color_noise=2.0, white_balance=(1.0, 1.0, 1.0), exposure=(0.8, 1.2),
        gamma=1.0, motion_blur_px=4.0, ambient=(0.25, 0.45), light_spread_deg=40.0, ir_ambient=0.1,
        ir_gain=1.1, ir_noise=2.0, skin_tones=(0.55, 0.7, 0.85, 1.0, 1.1),
        wall_gray=(0.7, 0.68, 0.62),
        attack_weights={"print": 3, "replay": 3, "rigid_mask": 2, "flexible_mask": 2}),
    "wmca": Domain(
        name="wmca", description="WMCA-like: studio light, high-quality colour, widest attack mix",
        baseline_m=0.035, color_hfov_deg=55.0, depth_hfov_deg=72.0, depth_min_m=0.2, depth_max_m=3.0,
        wall_m=(1.6, 2.2), noise_mm_per_m2=1.5, hole_rate=0.002, edge_hole_px=2,
        color_scale=1.0, color_noise=1.2, white_balance=(0.95, 1.0, 1.08), exposure=(0.95, 1.1),
        gamma=0.9, motion_blur_px=2.0, ambient=(0.45, 0.6), light_spread_deg=15.0, ir_ambient=0.02,
        ir_gain=0.9, ir_noise=1.5, skin_tones=(0.75, 0.9, 1.0, 1.15),
        wall_gray=(0.35, 0.38, 0.45),
        attack_weights={"print": 2, "replay": 2, "rigid_mask": 2, "paper_mask": 2, "flexible_mask": 2,
                        "partial": 2}),
    "padisi": Domain(
        name="padisi", description="PADISI-like: bright cool light, daylight near-IR, wide baseline",
        baseline_m=0.048, color_hfov_deg=65.0, depth_hfov_deg=85.0, depth_min_m=0.3, depth_max_m=3.5,
        wall_m=(2.5, 3.2), noise_mm_per_m2=3.0, hole_rate=0.008, edge_hole_px=3,
        color_scale=0.75, color_noise=2.5, white_balance=(0.9, 1.0, 1.15), exposure=(1.0, 1.3),
        gamma=1.1, motion_blur_px=5.0, ambient=(0.3, 0.55), light_spread_deg=35.0, ir_ambient=0.35,
        ir_gain=1.0, ir_noise=3.5, skin_tones=(0.6, 0.8, 1.0, 1.1),
        wall_gray=(0.8, 0.8, 0.82),
        attack_weights={"print": 1, "replay": 1, "rigid_mask": 3, "paper_mask": 1, "flexible_mask": 3,
                        "partial": 1}),
}

DOMAINS = tuple(DOMAIN_TABLE)


def get_domain(name: str) -> Domain:
    from edge_fas.errors import ConfigError

    try:
        return DOMAIN_TABLE[name]
    except KeyError:
        raise ConfigError(f"synthetic domain {name!r} is unknown; expected one of {', '.join(DOMAINS)}") from None
