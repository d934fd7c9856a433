"""Face crops from recorded sessions (drivers/session.py): field data for fine-tuning at a new site.

Each take contributes `frames_per_take` evenly spaced frames (one SessionSample each, decoded lazily).
Depth and IR are registered to colour (edge_fas.calibration.register_to_color) when the session
stored them raw. The face box comes from the BlazeFace detector, as in the live pipeline: the
detection overlapping the frame's truth box when it has one (synthetic sessions), else the largest
face; the truth box itself only where the detector finds nothing near it. Frames with no face are
skipped and counted. The domain is the session's domain (its site), the species the take's label.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.face import detection_near
from edge_fas.preprocess import PreprocessParams

__all__ = ["SessionSample", "session_samples", "session_crops", "frame_box"]


@dataclass(frozen=True)
class SessionSample:
    """One frame of a recorded take."""

    session: str
    take: str
    frame: int
    label: int
    species: str
    dataset: str   # the session's domain (its site)
    listed: str    # session/take/frame, for reports

    def identity(self) -> dict:
        take = Path(self.session) / "takes" / self.take / "frames.jsonl"  # rewritten only if the take is
        st = take.stat()
        return {"kind": "session", "session": str(Path(self.session).resolve()), "take": self.take,
                "frame": self.frame, "frames_jsonl": [st.st_size, st.st_mtime_ns],
                # the registration reads the session's calibration, which `edge-fas calibrate --apply` may replace
                "calibration": _calibration_digest(self.session)}

    def needs_detector(self, detect: bool = False) -> bool:
        return True

    def registered_frames(self):
        """The recorded frame set, depth and IR registered to colour when the session stored them raw."""
        f = _reader(self.session).load(self.take, self.frame)
        if not f.registered and (f.depth is not None or f.ir is not None) and f.calibration is not None:
            from edge_fas.calibration import register_to_color

            f = register_to_color(f)
        return f

    def source(self, params, detector):
        """The frame's SourceCrop around its face, or None where no face is found."""
        from edge_fas.data.source import face_source

        f = self.registered_frames()
        box = frame_box(f, detector)
        return None if box is None else face_source(f, box, params)


_READERS: dict = {}


def _version(path: str) -> tuple:
    """A session folder as this process sees it now: session.yaml is rewritten when its calibration changes."""
    return os.getpid(), path, (Path(path) / "session.yaml").stat().st_mtime_ns


def _reader(path: str):
    """One SessionReader per session folder, version of its session.yaml and process (a DataLoader worker
    opens its own)."""
    from edge_fas.drivers.session import SessionReader

    key = _version(path)
    if key not in _READERS:
        _READERS[key] = SessionReader(path)
    return _READERS[key]


@functools.lru_cache(maxsize=256)
def _digest(version: tuple) -> str:
    calibration = json.dumps(_reader(version[1]).metadata.get("calibration"), sort_keys=True)
    return hashlib.sha256(calibration.encode()).hexdigest()


def _calibration_digest(path: str) -> str:
    """SHA-256 of the session's calibration, hashed once per version of its session.yaml (not once per sample)."""
    return _digest(_version(path))


def frame_box(f, detector):
    """The face box the live pipeline would crop: the detection near the truth box (synthetic
    sessions), else the largest detection; the truth box where the detector finds nothing; None."""
    truth_box = f.truth.face_box if f.truth is not None else None
    box = None
    if f.rgb is not None and detector is not None:
        dets = detector.detect(f.rgb)
        if truth_box is not None:
            near = detection_near(dets, truth_box)
            box = near.box if near is not None else truth_box
        elif dets:
            box = max(dets, key=lambda d: d.area).box
    return box if box is not None else truth_box


def session_samples(paths, frames_per_take: int = 10) -> list[SessionSample]:
    """`frames_per_take` evenly spaced frames of every take of the sessions at `paths`."""
    from edge_fas.drivers.session import SessionReader

    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out = []
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"session {p} does not exist; pass a folder written by `edge-fas record`/`collect`")
        reader = SessionReader(p)
        for take in reader.takes:
            if not take.frames:
                continue
            pick = np.unique(np.linspace(0, take.frames - 1, min(frames_per_take, take.frames)).round().astype(int))
            species = take.species or ("attack" if take.label else "bona_fide")
            for k in pick:
                out.append(SessionSample(str(p), take.id, int(k), int(take.label), species,
                                         reader.domain or Path(p).name, f"{Path(p).name}/{take.id}/{int(k)}"))
    return out


def session_crops(paths, params: PreprocessParams | None = None, frames_per_take: int = 10, detector=None) -> CropSet:
    """Every sample of session_samples decoded into an in-memory CropSet (small sets; training streams)."""
    from edge_fas.data.source import finish

    params = params or PreprocessParams()
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    samples = session_samples(paths, frames_per_take)
    own = None
    if detector is None:
        from edge_fas.face import FaceDetector

        detector = own = FaceDetector()
    crops, kept = [], []
    try:
        for s in samples:
            src = s.source(params, detector)
            if src is not None:
                crops.append(finish(src, params))
                kept.append(s)
    finally:
        if own is not None:
            own.close()
    return CropSet.from_crops(crops, [s.label for s in kept], [s.species for s in kept], [s.dataset for s in kept],
                              meta={"source": "sessions", "sessions": [str(p) for p in paths],
                                    "skipped_no_face": len(samples) - len(kept)})
