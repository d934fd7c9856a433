"""The camera interface every driver implements."""

from __future__ import annotations

from collections.abc import Iterator

from edge_fas.types import DeviceInfo, FrameSet, RigCalibration

# Camera status values shown by the GUI and reported with verdicts.
STATUSES = ("connecting", "connected", "reconnecting", "stalled", "recording", "closed", "failed")


class Camera:
    """A source of FrameSets. Use as a context manager; `frames()` yields until closed or exhausted.

    Subclasses set `calibration` (RigCalibration) and `device` (DeviceInfo) once open, keep `status`
    current, and raise CameraError with the device and the fix in the message when something fails.
    """

    calibration: RigCalibration | None = None
    device: DeviceInfo = DeviceInfo()
    status: str = "connecting"
    kind: str = "unknown"  # the spec's kind (realsense, synthetic, replay, ...), set by open_camera

    def open(self) -> "Camera":
        return self

    def frames(self) -> Iterator[FrameSet]:
        raise NotImplementedError

    def close(self) -> None:
        self.status = "closed"

    def __enter__(self) -> "Camera":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
