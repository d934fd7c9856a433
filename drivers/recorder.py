"""Recording frame sets on a thread of their own: `Recorder(path, format=...)`.

The capture loop calls `put(frames)`, which never blocks and never drops silently: when the bounded
queue is full (the disk cannot keep up) the recorder ends the current take cleanly after the frames it
already holds, and `put` raises RecordingError saying so, as it does after any write error. The writer
is the session format (drivers/session.py, crash-safe frame by frame) or librealsense's .db3
(drivers/realsense.Db3Writer, format "native").

    with Recorder("out/session1", calibration=cam.calibration, device=cam.device, take={"species": "print"}) as rec:
        for frames in cam.frames():
            rec.put(frames)
    rec.stats  # {"written": N, "queued_max": M, "error": None}
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from edge_fas.errors import RecordingError
from edge_fas.types import DeviceInfo, FrameSet, RigCalibration

__all__ = ["Recorder", "FORMATS"]

FORMATS = ("session", "native")
_STOP = object()


class Recorder:
    def __init__(self, path: str | Path, format: str = "session", calibration: RigCalibration | None = None,
                 device: DeviceInfo | None = None, queue_frames: int = 120, take: dict | None = None,
                 session: dict | None = None, fps: int = 30):
        if format not in FORMATS:
            raise RecordingError(f"record format {format!r}; expected one of {', '.join(FORMATS)}")
        if queue_frames < 1:
            raise RecordingError(f"queue_frames={queue_frames} must be at least 1")
        self.path, self.format = Path(path), format
        if format == "native":
            from edge_fas.drivers.realsense import Db3Writer
            self._writer = Db3Writer(self.path, calibration, device, fps=fps)
        else:
            from edge_fas.drivers.session import SessionWriter
            self._writer = SessionWriter(self.path, device=device, calibration=calibration, **(session or {}))
            self._writer.begin_take(**(take or {"species": "bona_fide", "consent": False}))
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self.stats = {"written": 0, "queued_max": 0, "error": None}
        self._error: str | None = None
        self._write_failed = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"recorder:{self.path.name}", daemon=True)
        self._thread.start()

    def put(self, frames: FrameSet) -> None:
        if self._error:
            raise RecordingError(self._error)
        try:
            self._queue.put_nowait(frames)
        except queue.Full:
            self._fail(f"recording to {self.path} stopped after {self.stats['written']} frames: the disk could not "
                       f"keep up (queue of {self._queue.maxsize} frames full); the take ends cleanly there. Use a "
                       "faster disk, a lower resolution, or a larger record.queue_frames")
            self._stopping = True
            self._queue.put(_STOP)  # blocks only until the writer frees one slot; it then ends the take
            raise RecordingError(self._error)
        self.stats["queued_max"] = max(self.stats["queued_max"], self._queue.qsize())

    def new_take(self, **take) -> None:
        """End the current take and begin another (session format), in order with the queued frames."""
        if self.format != "session":
            raise RecordingError("takes exist only in the session format; record with format='session'")
        if self._error:
            raise RecordingError(self._error)
        self._queue.put(("take", take))

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = message
            self.stats["error"] = message

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if self._write_failed:
                continue  # after a write error only drain the queue
            try:
                if isinstance(item, tuple):
                    self._writer.begin_take(**item[1])  # ends the previous take
                    continue
                self._writer.write(item)
                self.stats["written"] += 1
            except Exception as e:  # noqa: BLE001 - reported to the producer through put()
                self._write_failed = True
                self._fail(f"recording to {self.path} failed after {self.stats['written']} frames: {e}")
        try:
            self._writer.close()
        except Exception as e:  # noqa: BLE001
            self._fail(f"closing {self.path} failed: {e}")

    def close(self) -> dict:
        """Write out everything queued, end the take and close the file; returns stats."""
        if self._thread.is_alive():
            if not self._stopping:
                self._stopping = True
                self._queue.put(_STOP)
            self._thread.join()
        return self.stats

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
