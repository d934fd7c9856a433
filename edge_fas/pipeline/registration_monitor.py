"""A running registration check on the faces the pipeline judges: is the calibration still this camera's?

`edge-fas calibrate --check` measures the registration once, when a site installs its camera. A camera knocked
on its mount, or a `calibration.file` made for another unit of the same model, then goes on registering depth
and IR to the wrong colour pixels without a word, and that is not fail-closed: bench_miscalibration.py measured
the physics check passing twice as many rigid masks, because misregistered depth adds relief at the face's border.

So while the pipeline runs, once every `interval_s` of camera time, the monitor measures the misalignment of the
registered depth outlines around the tracked face (the head and shoulders against the room) against the colour
edges there (`calibration.check.measure_registration`: a shift T, the depth camera's outline growth apart).

One face's readings are not enough. A right calibration reads more than 5 px on about one face in twelve on the
synthetic rig: hair that depth does not see on one side of the head, a noisy outline. Those faces read the same
all the while they stand there, so a window of readings from one person who stays would fail a right rig. A
wrong calibration moves every face's outline the same way. So the monitor sums up each face (the pipeline tells
it when the tracked face changes) by the per-axis median of its readings (at least READINGS_PER_FACE), keeps the
last `faces` faces, and refuses when, with at least `min_faces` of them, the per-axis median of their shifts is
longer than `limit_px` (pixels of a 640-pixel-wide colour image; scaled with the image's width). Then every
frame gets the fault `registration_drift` (`unknown`, never `live`; the kiosk shows "Out of service") until
the faces' median comes back within half the limit. A reading counts when its fit explains enough outline
pixels (MIN_MATCHED_PX, MIN_SHARE).

A view with no outline to measure counts for nothing: no reading, no fault; nor does a face that left before it
was read READINGS_PER_FACE times. A check that fails for any other reason (a bug) is a `pipeline_error` on
every frame, never a silent monitor. The monitor starts empty: after a restart a wrong calibration is found
again after `min_faces` faces.

In live mode the check runs on its own thread (about 50 ms of CPU per reading) and never delays a frame;
`offer(..., synchronous=True)` (replays judged frame by frame, `Pipeline.process`) runs it in the caller's
thread at the same camera times, so the same recording gives the same verdicts.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import numpy as np

from edge_fas.calibration.check import measure_registration
from edge_fas.errors import CalibrationError
from edge_fas.pipeline import decision as D
from edge_fas.pipeline.decision import reason
from edge_fas.pipeline.mailbox import Mailbox

log = logging.getLogger(__name__)

BOX_MARGIN = 0.3  # the face box grown by this share of its size on each side: the head's outline and the room
READINGS_PER_FACE = 2  # a face read fewer times says nothing (one frame of a turning head, a hand passing)
KEPT_PER_FACE = 20  # a face that stays is summed up by its latest readings
REFERENCE_WIDTH_PX = 640  # limit_px is in pixels of an image this wide
# A reading counts when its fit explains calibrate --check's MIN_MATCHED_PX outline pixels, but only this share of
# them (RegistrationCheck.explains) (calibrate --check: 10%): a face's readings are pooled over faces, and on noisy depth a camera misregistered
# by 10 px or more explains 3-9% of its outline pixels while its shifts still agree (chosen on rig seeds 0-2 and
# on seeds 20-21, which were then reported no more)
MIN_SHARE = 0.03
RELEASE = 0.5  # once refusing, faces must read within this share of the limit before frames are judged again


class RegistrationMonitor:
    def __init__(self, limit_px: float = 6.0, faces: int = 5, min_faces: int = 3, interval_s: float = 0.5,
                 measure=None):
        if faces < 1 or not 1 <= min_faces <= faces:
            raise ValueError(f"registration monitor: min_faces {min_faces} must be within 1..faces ({faces})")
        self.limit_px = float(limit_px)
        self.faces = int(faces)
        self.min_faces = int(min_faces)
        self.interval_ms = float(interval_s) * 1000.0
        self._measure = measure or measure_registration  # injectable for tests
        self._by_face: dict[int, deque] = {}  # face -> its latest shifts (insertion order: oldest face first)
        self._shifts: list[tuple[float, float]] = []  # what face_shifts() returns, updated with each reading
        self._drift: tuple[float, float] | None = None  # what drift() returns, updated with each reading
        self._lock = threading.Lock()
        self._face = 0
        self._width: int | None = None
        self._next_ms: float | None = None
        self._error: str | None = None
        self._refusing = False
        self.taken = 0  # frames measured
        self.unmeasurable = 0  # ... whose view had no outline to measure
        self._mailbox: Mailbox | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, calibration_config) -> "RegistrationMonitor | None":
        c = calibration_config
        if not c.monitor:
            return None
        return cls(c.monitor_limit_px, c.monitor_faces, c.monitor_min_faces, c.monitor_interval_s)

    # -- feeding ----------------------------------------------------------------------------------
    def new_face(self) -> None:
        """The tracked face changed (another person, or the same one back after a gap): readings from now on are
        another face's."""
        self._face += 1

    def offer(self, reg, box, synchronous: bool = False) -> None:
        """A registered frame set with the tracked face's box: measured when `interval_s` of camera time has passed
        since the last one taken (the frame's own timestamp, so a replay samples the same frames every run), on the
        monitor's thread, or in this one when `synchronous`."""
        if box is None or reg is None or not reg.registered or reg.rgb is None or reg.depth is None:
            return
        t = float(reg.timestamp_ms)
        if self._next_ms is not None and self._next_ms - self.interval_ms <= t < self._next_ms:
            return  # (a timestamp that jumps back, a new recording, starts the interval again)
        self._next_ms = t + self.interval_ms
        self._width = int(reg.rgb.shape[1])
        if synchronous:
            self._take(reg, box, self._face)
            return
        if self._thread is None:
            self._mailbox = Mailbox()
            self._thread = threading.Thread(target=self._loop, name="edge-fas-registration", daemon=True)
            self._thread.start()
        self._mailbox.put((reg, box, self._face))  # a reading still waiting is replaced by the newer frame

    def _loop(self) -> None:
        while True:
            item = self._mailbox.get()
            if item is None:
                return
            self._take(*item)

    def _take(self, reg, box, face: int) -> None:
        x0, y0, x1, y1 = (float(v) for v in box)
        mx, my = BOX_MARGIN * (x1 - x0), BOX_MARGIN * (y1 - y0)
        try:
            r = self._measure(reg, (x0 - mx, y0 - my, x1 + mx, y1 + my), overlay=False)
        except CalibrationError:  # no outline in view
            r = None
        except Exception as e:  # a bug must not switch the check off unseen
            log.exception("registration monitor: the check failed")
            with self._lock:
                self._error = f"registration monitor failed: {e!r}"
            return
        with self._lock:
            self.taken += 1
            if r is None or not r.explains(MIN_SHARE):
                self.unmeasurable += 1
                return
            if face not in self._by_face:
                self._by_face[face] = deque(maxlen=KEPT_PER_FACE)
            self._by_face[face].append(tuple(float(v) for v in r.shift_px))
            while len(self._by_face) > self.faces + 1:  # the faces kept, and one being read
                del self._by_face[next(iter(self._by_face))]
            read = [np.asarray(v) for v in self._by_face.values() if len(v) >= READINGS_PER_FACE][-self.faces:]
            self._shifts = [tuple(float(x) for x in np.median(v, axis=0)) for v in read]
            if len(self._shifts) >= self.min_faces:
                dx, dy = np.median(np.asarray(self._shifts), axis=0)
                self._drift = float(dx), float(dy)

    def close(self) -> None:
        if self._mailbox is not None:
            self._mailbox.close()
        if self._thread is not None:
            self._thread.join(2.0)

    # -- state ------------------------------------------------------------------------------------
    def face_shifts(self) -> list[tuple[float, float]]:
        """Each of the last `faces` faces read READINGS_PER_FACE times or more: the per-axis median of its shifts."""
        with self._lock:
            return list(self._shifts)

    def drift(self) -> tuple[float, float] | None:
        """The per-axis median of the faces' shifts (None until min_faces faces were read)."""
        with self._lock:
            return self._drift

    @property
    def limit(self) -> float:
        """limit_px at this image's width."""
        return self.limit_px * (self._width or REFERENCE_WIDTH_PX) / REFERENCE_WIDTH_PX

    def faults(self) -> list[str]:
        """[] while the registration holds (or too few faces were read yet); else the fault for every frame. Once
        refusing it goes on until the faces' median shift is within RELEASE of the limit: a wrong calibration whose
        faces read near the limit does not flicker between refusing and judging. Call from one thread."""
        if self._error is not None:
            return [reason(D.PIPELINE_ERROR, self._error)]
        d = self.drift()
        if d is not None:
            self._refusing = np.hypot(*d) > self.limit * (RELEASE if self._refusing else 1.0)
        if not self._refusing:
            return []
        return [reason(D.REGISTRATION_DRIFT,
                       f"depth lies {np.hypot(*(d or (np.nan, np.nan))):.1f} px off the colour image around the last "
                       f"{len(self.face_shifts())} faces (limit {self.limit:g} px): the camera moved on its mount or "
                       "calibration.file is another camera's; run edge-fas calibrate --check")]

    def summary(self) -> dict:
        """For counters and reports: faces summed up, the median shift's length, frames measured, unmeasurable."""
        d = self.drift()
        faces = len(self.face_shifts())
        with self._lock:
            return {"faces": faces, "drift_px": None if d is None else round(float(np.hypot(*d)), 2),
                    "refusing": self._refusing, "taken": self.taken, "unmeasurable": self.unmeasurable}
