"""Core data types shared by every part of edge-fas (see DESIGN.md, "Core types").

Label convention everywhere inside: 1 = attack (presentation attack), 0 = bona fide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_fas.calibration.rig import Extrinsics, Intrinsics, RigCalibration

__all__ = ["DeviceInfo", "GroundTruth", "FrameSet", "FaceCrop", "ModelOutput", "Verdict",
           "Intrinsics", "Extrinsics", "RigCalibration", "MODALITIES", "VERDICTS"]

MODALITIES = ("rgb", "depth", "ir")
VERDICTS = ("live", "attack", "unknown")


@dataclass
class DeviceInfo:
    model: str = "unknown"
    serial: str = ""
    firmware: str = ""
    driver: str = ""  # realsense, openni, orbbec, synthetic, replay

    def to_dict(self) -> dict:
        return {"model": self.model, "serial": self.serial, "firmware": self.firmware, "driver": self.driver}


@dataclass
class GroundTruth:
    """What a simulated or labelled frame really shows (for demos, tests and accuracy reports)."""

    label: int  # 1 = attack, 0 = bona fide
    species: str = "bona_fide"  # print, replay, rigid_mask, paper_mask, flexible_mask, partial, ...
    domain: str = ""
    face_box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 in colour pixels
    distance_m: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"label": int(self.label), "species": self.species, "domain": self.domain,
             "face_box": list(self.face_box) if self.face_box is not None else None,
             "distance_m": self.distance_m}
        d.update(self.extra)
        return d


@dataclass
class FrameSet:
    """One instant of the rig: colour, depth and IR, any of which may be None.

    rgb: H x W x 3 uint8 in RGB order. depth: H x W uint16 in raw units, metres = depth * depth_scale,
    0 = no measurement. ir: H x W uint8 or uint16. Timestamps are milliseconds (device clock where
    the device has one), counters the device's frame numbers; both per stream. meta: what the source knows
    beyond the pixels, e.g. skew_ms (stream timestamp spread), emitter_on, and sensor: {stream: {exposure,
    gain, laser power, ...}} from the camera's frame metadata (drivers/realsense.py, drivers/orbbec.py);
    recorded sessions keep it per frame.
    """

    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    ir: np.ndarray | None = None
    depth_scale: float = 0.001
    timestamps: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    registered: bool = False
    device: DeviceInfo = field(default_factory=DeviceInfo)
    calibration: RigCalibration | None = None
    truth: GroundTruth | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def present(self) -> dict[str, bool]:
        return {m: getattr(self, m) is not None for m in MODALITIES}

    def depth_m(self) -> np.ndarray | None:
        """Depth in metres as float32 (0 where there is no measurement)."""
        return None if self.depth is None else self.depth.astype(np.float32) * np.float32(self.depth_scale)

    def replace(self, **changes) -> "FrameSet":
        return replace(self, **changes)

    @property
    def timestamp_ms(self) -> float | None:
        """The colour timestamp, or the first stream's when there is no colour."""
        if "rgb" in self.timestamps:
            return self.timestamps["rgb"]
        return next(iter(self.timestamps.values()), None)

    @property
    def counter(self) -> int | None:
        if "rgb" in self.counters:
            return self.counters["rgb"]
        return next(iter(self.counters.values()), None)


@dataclass
class FaceCrop:
    """The face in all three modalities at the model's input size, normalised for the network.

    rgb: 3 x S x S float32, depth: 1 x S x S float32, ir: 1 x S x S float32; a missing modality is
    zeros and False in `present`. `box` is the crop square in colour pixels (x0, y0, x1, y1).
    """

    rgb: np.ndarray
    depth: np.ndarray
    ir: np.ndarray
    present: np.ndarray  # (3,) bool in MODALITIES order
    box: tuple[int, int, int, int] | None = None
    depth_valid: np.ndarray | None = None  # S x S bool: depth pixels that held a measurement

    def as_batch(self) -> dict[str, np.ndarray]:
        return {"rgb": self.rgb[None], "depth": self.depth[None], "ir": self.ir[None], "present": self.present[None]}


@dataclass
class ModelOutput:
    """Network outputs for a batch. score = probability of attack, shape (B,).

    trace: (B, C, H, W) spoof-trace image (spoof_trace model), uncertainty: (B, M, h, w) per-modality
    token or pixel map (MMDG); per_modality_scores: (B, 3) where the model has them.
    """

    score: np.ndarray
    logits: np.ndarray | None = None
    trace: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    per_modality_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(np.asarray(self.score).shape[0])

    def __getitem__(self, i: int) -> "ModelOutput":
        def pick(a):
            return None if a is None else np.asarray(a)[i:i + 1]
        return ModelOutput(pick(self.score), pick(self.logits), pick(self.trace), pick(self.uncertainty),
                           pick(self.per_modality_scores))


@dataclass
class Verdict:
    """The decision for one frame: live, attack or unknown, with the reasons and per-stage latency."""

    verdict: str
    score: float | None = None
    threshold: float | None = None
    reasons: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    frame: dict[str, Any] = field(default_factory=dict)  # counter, timestamp_ms
    truth: GroundTruth | None = None
    box: tuple[int, int, int, int] | None = None
    output: ModelOutput | None = None  # maps for the GUI; not serialised
    # where the verdict comes from (edge_fas.deployment.event_context): mode, camera kind and serial,
    # artifact digest, accepted risks, wall-clock time; serialised at the top level
    context: dict[str, Any] = field(default_factory=dict)
    physics: Any = None  # the physics check's PhysicsResult (measurements, findings, maps), when it ran
    pose: Any = None  # the head's HeadPose (edge_fas.pipeline.pose), when depth measured it

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def to_dict(self) -> dict:
        from edge_fas.pipeline.guidance import prompt  # here: the pipeline package imports this module

        d = {"verdict": self.verdict,
             "score": None if self.score is None else round(float(self.score), 6),
             "threshold": None if self.threshold is None else float(self.threshold),
             "reasons": list(self.reasons),
             "prompt": prompt(self.verdict, self.reasons, self.pose),  # what may be shown to the person presenting
             "latency_ms": {k: round(float(v), 3) for k, v in self.latency_ms.items()},
             "frame": self.frame}
        if self.box is not None:
            d["box"] = [int(v) for v in self.box]
        if self.truth is not None:
            d["truth"] = self.truth.to_dict()
        for k, v in self.context.items():
            d.setdefault(k, v)
        if self.physics is not None:
            d["physics"] = self.physics.to_dict()
        if self.pose is not None:
            d["pose"] = self.pose.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
