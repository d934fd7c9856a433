"""Stream integrity checks: is this frame set fresh, complete, consistent and from an allowed camera?

Each check returns fault reasons (strings, see edge_fas.pipeline.decision) and never raises on bad
frames: a broken stream must turn into an `unknown` verdict with the reason, not a crash.

- serial: the device's serial must be in camera.allowed_serials (when that list is not empty);
- required modalities (decision.required_modalities) must be present;
- per-stream frame counters and timestamps must strictly advance (a counter that stands still or
  goes back is a stale or re-sent frame);
- an identical image twice is a replay of the stream (sensor noise makes real frames differ);
- stream skew: the spread of the streams' timestamps within one frame set;
- a replayed frame the recording could not give (meta "corrupt") is `recording_corrupt`;
The pipeline runs `check` on EVERY captured frame in the capture thread (so a repeated or stale
frame is caught even when the worker would have skipped it) and `check_age` when it processes one.

- age: how long the frame waited between capture and processing (host clock, measured by the pipeline).
"""

from __future__ import annotations

import zlib

import numpy as np

from edge_fas.pipeline.decision import (MISSING_MODALITY, RECORDING_CORRUPT, REPEATED_FRAME, SERIAL_NOT_ALLOWED,
                                        STALE_FRAME, STREAM_SKEW, reason)
from edge_fas.types import MODALITIES, FrameSet


def image_digest(img: np.ndarray) -> int:
    """A cheap content digest (CRC-32 of the raw bytes, about 1 ms for a VGA colour frame)."""
    return zlib.crc32(np.ascontiguousarray(img).data)


class IntegrityChecker:
    """Stateful across frames of one stream; `reset()` after a reconnect (counters restart then)."""

    def __init__(self, required_modalities=("rgb", "depth", "ir"), allowed_serials=(), max_skew_ms: float = 40.0,
                 max_frame_age_ms: float = 500.0):
        bad = [m for m in required_modalities if m not in MODALITIES]
        if bad:
            raise ValueError(f"required modalities {bad} unknown; expected a subset of {MODALITIES}")
        self.required = tuple(required_modalities)
        self.allowed_serials = {str(s) for s in allowed_serials}
        self.max_skew_ms = float(max_skew_ms)
        self.max_frame_age_ms = float(max_frame_age_ms)
        self.reset()

    @classmethod
    def from_config(cls, config) -> "IntegrityChecker":
        return cls(config.decision.required_modalities, config.camera.allowed_serials,
                   config.decision.max_skew_ms, config.decision.max_frame_age_ms)

    def reset(self) -> None:
        self._last_counters: dict[str, int] = {}
        self._last_stamps: dict[str, float] = {}
        self._last_digest: dict[str, int] = {}

    def check(self, frames: FrameSet, age_ms: float | None = None) -> list[str]:
        faults: list[str] = []
        if frames.meta.get("corrupt"):  # set by a replay that could not read this frame
            faults.append(reason(RECORDING_CORRUPT, str(frames.meta["corrupt"])))
        serial = str(frames.device.serial or "")
        if self.allowed_serials and serial not in self.allowed_serials:
            faults.append(reason(SERIAL_NOT_ALLOWED, f"camera serial {serial or '(none)'!r} is not in "
                                 "camera.allowed_serials"))
        present = frames.present()
        missing = [m for m in self.required if not present[m]]
        if missing:
            faults.append(reason(MISSING_MODALITY, ",".join(missing)))
        faults += self._check_advance(frames)
        faults += self._check_repeat(frames, present)
        stamps = [float(frames.timestamps[m]) for m in MODALITIES if present[m] and m in frames.timestamps]
        if len(stamps) >= 2 and max(stamps) - min(stamps) > self.max_skew_ms:
            faults.append(reason(STREAM_SKEW, f"{max(stamps) - min(stamps):.1f} ms > {self.max_skew_ms:g} ms"))
        return faults + self.check_age(age_ms)

    def check_age(self, age_ms: float | None) -> list[str]:
        if age_ms is not None and age_ms > self.max_frame_age_ms:
            return [reason(STALE_FRAME, f"frame is {age_ms:.0f} ms old > {self.max_frame_age_ms:g} ms")]
        return []

    def _check_advance(self, frames: FrameSet) -> list[str]:
        faults = []
        for m, c in frames.counters.items():
            last = self._last_counters.get(m)
            if last is not None and int(c) <= last:
                faults.append(reason(STALE_FRAME, f"{m} counter {c} did not advance (last {last})"))
            self._last_counters[m] = max(int(c), last if last is not None else int(c))
        for m, t in frames.timestamps.items():
            last = self._last_stamps.get(m)
            if last is not None and float(t) <= last:
                faults.append(reason(STALE_FRAME, f"{m} timestamp {float(t):.1f} ms did not advance (last {last:.1f})"))
            self._last_stamps[m] = max(float(t), last if last is not None else float(t))
        if not frames.counters and not frames.timestamps:
            faults.append(reason(STALE_FRAME, "frame set has no counters or timestamps to prove it is fresh"))
        return faults

    def _check_repeat(self, frames: FrameSet, present: dict[str, bool]) -> list[str]:
        # rgb (or IR when there is no colour) carries sensor noise in every real frame
        m = "rgb" if present["rgb"] else "ir" if present["ir"] else None
        if m is None:
            return []
        digest = image_digest(getattr(frames, m))
        repeated = self._last_digest.get(m) == digest
        self._last_digest[m] = digest
        return [reason(REPEATED_FRAME, f"{m} image identical to the previous frame (stream replay)")] if repeated else []
