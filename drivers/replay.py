"""Replay of every recording format behind `--camera replay:PATH`.

- a session folder (session.yaml, see drivers/session.py): frames with their take labels as truth
- a librealsense recording (.db3 or .bag): through the RealSense driver with set_real_time(False)
- an OpenNI2 recording (.oni): through the OpenNI2 driver's playback

Replay is as fast as it is consumed unless realtime=True, which paces session frames by their
recorded timestamps (`run --paced`); `run --no-drop` makes the pipeline judge every frame in order.
A session frame that cannot be read (a deleted modality folder, a corrupt PNG) comes as a frame set
without images and meta["corrupt"] saying why: the pipeline judges it `unknown` (recording_corrupt)
and the replay goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from edge_fas.drivers.base import Camera
from edge_fas.drivers.session import SessionReader, is_session
from edge_fas.errors import CameraError, RecordingError
from edge_fas.types import FrameSet

__all__ = ["SessionCamera", "open_replay"]


class SessionCamera(Camera):
    """A session folder as a camera."""

    kind = "replay"

    def __init__(self, path: str | Path, realtime: bool = False, take: str | None = None):
        self.path, self.realtime, self.take = Path(path), realtime, take
        self.status = "connecting"
        self._reader = None

    def open(self) -> "SessionCamera":
        try:
            self._reader = SessionReader(self.path)
        except RecordingError as e:
            raise CameraError(str(e)) from e
        self.calibration, self.device = self._reader.calibration, self._reader.device
        self.status = "connected"
        return self

    @property
    def reader(self) -> SessionReader:
        return self._reader

    def frames(self) -> Iterator[FrameSet]:
        if self._reader is None:
            raise CameraError(f"replay of {self.path} is not open; use it as a context manager")
        start, first = time.monotonic(), None
        for frames in self._reader.frames(take=self.take, corrupt_ok=True):
            if self.status == "closed":
                return
            if self.realtime and frames.timestamp_ms is not None:
                first = frames.timestamp_ms if first is None else first
                delay = start + (frames.timestamp_ms - first) / 1000.0 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield frames
        self.status = "closed"


def open_replay(arg: str | None, config=None, realtime: bool = False) -> Camera:
    if not arg:
        raise CameraError("replay needs a path: replay:SESSION_FOLDER, replay:FILE.db3 or replay:FILE.oni")
    path = Path(arg).expanduser()
    if path.is_dir() or is_session(path):
        if not is_session(path):
            raise CameraError(f"{path} is a folder but not an edge-fas session (no session.yaml)")
        return SessionCamera(path, realtime=realtime)
    suffix = path.suffix.lower()
    if suffix in (".db3", ".bag"):
        from edge_fas.drivers.realsense import RealSenseCamera
        return RealSenseCamera(playback=path)
    if suffix == ".oni":
        from edge_fas.drivers.openni import OpenNICamera
        return OpenNICamera(playback=path)
    if not path.exists():
        raise CameraError(f"recording {path} does not exist; check the replay:PATH")
    raise CameraError(f"{path}: unknown recording format {suffix or '(no suffix)'}; replay reads session folders, "
                      ".db3/.bag (librealsense) and .oni (OpenNI2)")
