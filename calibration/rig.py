"""Camera model of a colour + depth + IR rig: intrinsics per stream, extrinsics to colour, YAML I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from edge_fas.errors import CalibrationError

DISTORTION_MODELS = ("none", "brown_conrady", "inverse_brown_conrady", "kannala_brandt4")
STREAMS = ("color", "depth", "ir")


@dataclass
class Intrinsics:
    """Pinhole intrinsics of one stream. Distortion follows OpenCV's (k1, k2, p1, p2, k3) order."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "none"
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.model not in DISTORTION_MODELS:
            raise CalibrationError(
                f"distortion model {self.model!r} is not known; expected one of {', '.join(DISTORTION_MODELS)}")
        if self.width <= 0 or self.height <= 0 or self.fx <= 0 or self.fy <= 0:
            raise CalibrationError(
                f"intrinsics {self.width}x{self.height} fx={self.fx} fy={self.fy} are not a valid camera; "
                "width, height, fx and fy must be positive")
        self.coeffs = tuple(float(c) for c in self.coeffs)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def dist(self) -> np.ndarray:
        return np.asarray(self.coeffs, dtype=np.float64)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera at another resolution (same field of view)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, self.model, self.coeffs)

    def to_dict(self) -> dict:
        return {"width": int(self.width), "height": int(self.height), "fx": float(self.fx), "fy": float(self.fy),
                "cx": float(self.cx), "cy": float(self.cy), "model": self.model, "coeffs": list(self.coeffs)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "intrinsics") -> "Intrinsics":
        return _construct(cls, _fields(d, cls, where), where)


@dataclass
class Extrinsics:
    """Rigid transform x_to = R @ x_from + t, with t in metres."""

    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        if not np.allclose(self.R @ self.R.T, np.eye(3), atol=1e-4) or np.linalg.det(self.R) < 0:
            raise CalibrationError("extrinsic rotation R is not a rotation matrix (R R^T != I or det(R) < 0); "
                                   "check the calibration file's row order")

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform N x 3 points."""
        return points @ self.R.T + self.t

    def inverse(self) -> "Extrinsics":
        return Extrinsics(self.R.T, -self.R.T @ self.t)

    def to_dict(self) -> dict:
        return {"R": self.R.tolist(), "t": self.t.tolist()}

    @classmethod
    def from_dict(cls, d: dict, where: str = "extrinsics") -> "Extrinsics":
        return _construct(cls, _fields(d, cls, where), where)


@dataclass
class RigCalibration:
    """Intrinsics of the colour, depth and IR cameras and the transforms from depth and IR to colour."""

    color: Intrinsics | None
    depth: Intrinsics | None
    ir: Intrinsics | None = None
    depth_to_color: Extrinsics = field(default_factory=Extrinsics)
    ir_to_color: Extrinsics = field(default_factory=Extrinsics)
    depth_scale: float = 0.001  # metres per depth unit
    source: str = "unknown"  # where it came from: device, checkerboard, synthetic, file
    # the camera a checkerboard calibration was measured on ("" = not recorded): a file made on one unit
    # must not register another unit's frames, whose lenses and baseline differ by millimetres
    camera_model: str = ""
    camera_serial: str = ""

    def to_dict(self) -> dict:
        d = {"version": 1, "source": self.source, "depth_scale": float(self.depth_scale)}
        if self.camera_model or self.camera_serial:
            d["camera"] = {"model": self.camera_model, "serial": self.camera_serial}
        for s in STREAMS:
            intr = getattr(self, s)
            d[s] = intr.to_dict() if intr is not None else None
        d["depth_to_color"] = self.depth_to_color.to_dict()
        d["ir_to_color"] = self.ir_to_color.to_dict()
        return d

    def camera_problem(self, device) -> str | None:
        """Why this calibration was not measured on `device` (a DeviceInfo), or None: it was, or it names no
        camera, or the device does not say what it is."""
        if self.camera_serial and device.serial and device.serial != self.camera_serial:
            return (f"it was measured on the camera with serial {self.camera_serial}, and this camera's serial is "
                    f"{device.serial}")
        if self.camera_model and device.model not in ("", "unknown") and device.model != self.camera_model:
            return f"it was measured on a {self.camera_model}, and this camera is a {device.model}"
        return None

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> "RigCalibration":
        if not isinstance(d, dict):
            raise CalibrationError(f"{where}: expected a mapping with keys color, depth, ir, ...; got {type(d).__name__}")
        known = {"version", "source", "depth_scale", "camera", "depth_to_color", "ir_to_color", *STREAMS}
        unknown = set(d) - known
        if unknown:
            raise CalibrationError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(known)}")
        if d.get("version", 1) != 1:
            raise CalibrationError(f"{where}: calibration version {d['version']!r} is not supported (expected 1)")
        intr = {s: (Intrinsics.from_dict(d[s], f"{where}.{s}") if d.get(s) is not None else None) for s in STREAMS}
        camera = d.get("camera") or {}
        if not isinstance(camera, dict) or set(camera) - {"model", "serial"}:
            raise CalibrationError(f"{where}.camera: expected a mapping with keys model and serial; got {camera!r}")
        return cls(
            **intr,
            depth_to_color=Extrinsics.from_dict(d.get("depth_to_color") or {}, f"{where}.depth_to_color"),
            ir_to_color=Extrinsics.from_dict(d.get("ir_to_color") or {}, f"{where}.ir_to_color"),
            depth_scale=float(d.get("depth_scale", 0.001)),
            source=str(d.get("source", "file")),
            camera_model=str(camera.get("model") or ""),
            camera_serial=str(camera.get("serial") or ""),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "RigCalibration":
        p = Path(path)
        if not p.is_file():
            raise CalibrationError(f"calibration file {p} does not exist; run `edge-fas calibrate` to make one, "
                                   "or use the camera's factory calibration (omit calibration.file)")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise CalibrationError(f"calibration file {p} is not valid YAML: {e}") from e
        return cls.from_dict(data, where=str(p))


def _fields(d: dict, cls, where: str) -> dict:
    if not isinstance(d, dict):
        raise CalibrationError(f"{where}: expected a mapping, got {type(d).__name__}")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(d) - allowed
    if unknown:
        raise CalibrationError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    try:
        return {k: (tuple(v) if k == "coeffs" else v) for k, v in d.items()}
    except TypeError as e:
        raise CalibrationError(f"{where}: {e}") from e


def _construct(cls, kwargs: dict, where: str):
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise CalibrationError(f"{where}: {e}") from e
