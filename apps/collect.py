"""Field data collection without Qt: what a take is, the consent gate, the live face check and the
take recorder that writes helper C's session format (edge_fas.drivers.session.SessionWriter).

The operator GUI (edge_fas.apps.collect_window) and the CLI fallback (`edge-fas collect --no-gui`)
both drive these. Nothing here drops a frame silently: the recorder has its own bounded queue and a
writer thread; when the disk cannot keep up the take is stopped cleanly and the reason is kept.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from edge_fas.drivers.summary import sensor_values, setting_ranges
from edge_fas.errors import EdgeFasError
from edge_fas.labels import SPECIES, SUBJECT_ID, consent_problem, label_of, new_subject_id, species_problem, \
    subject_problem
from edge_fas.types import MODALITIES, FrameSet

__all__ = ["SPECIES", "SUBJECT_ID", "CollectError", "TakeSpec", "FaceCheck", "TakeRecorder", "face_check",
           "new_subject_id", "open_session_writer", "record_take"]


DEFAULT_RETENTION_DAYS = 365


class CollectError(EdgeFasError):
    """A take cannot start or continue (bad labels, no consent, disk too slow)."""


@dataclass
class TakeSpec:
    """The labels of one take. label follows the project convention: 1 attack, 0 bona fide.
    `synthetic`: the source is the synthetic rig (no person in view, so no consent needed)."""

    subject_id: str
    species: str = "bona_fide"
    site: str = ""
    domain: str = ""
    notes: str = ""
    consent: bool = False
    synthetic: bool = False

    @property
    def label(self) -> int:
        return label_of(self.species)

    def problems(self) -> list[str]:
        """Why this take may not be recorded (empty when it may). Each names the field and the fix
        (the rules of edge_fas.labels, shared with `edge-fas record`)."""
        found = (subject_problem(self.subject_id), species_problem(self.species),
                 consent_problem(self.consent, self.synthetic))
        return [p for p in found if p]

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise CollectError("cannot record this take: " + "; ".join(problems))


@dataclass
class FaceCheck:
    """What the operator sees before and during a take."""

    face_found: bool
    distance_m: float | None
    present: dict[str, bool]
    box: tuple[int, int, int, int] | None = None
    issues: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues

    def text(self) -> str:
        streams = " ".join(f"{m}{'✓' if self.present.get(m) else '✗'}" for m in MODALITIES)
        dist = "—" if self.distance_m is None else f"{self.distance_m:.2f} m"
        face = "face found" if self.face_found else "no face"
        head = f"{face} · distance {dist} · {streams}"
        return head + ("" if self.ok else " · " + "; ".join(self.issues))


def face_distance(frames: FrameSet, box) -> float | None:
    """Median depth (m) of the measured pixels inside the face box of registered frames."""
    d = frames.depth_m()
    if d is None or box is None:
        return None
    x0, y0, x1, y1 = (int(v) for v in box)
    patch = d[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    valid = patch[patch > 0]
    return float(np.median(valid)) if valid.size >= 10 else None


def face_check(frames: FrameSet, detector, min_distance_m: float = 0.25,
               max_distance_m: float = 1.5) -> FaceCheck:
    """Is a face found, at what distance, are all three streams present (for the live preview).

    Depth is registered to colour first (when it is not yet and the rig is calibrated) so the face box
    can be read in the depth image."""
    present = frames.present()
    issues = [f"{m} stream missing" for m in MODALITIES if not present[m]]
    image = frames.rgb if frames.rgb is not None else frames.ir
    faces = detector.detect(image) if image is not None else []
    box = max(faces, key=lambda f: f.area).box if faces else None
    distance = None
    if box is None:
        issues.append("no face in view")
    elif frames.depth is not None:
        registered = frames
        if not frames.registered and frames.calibration is not None:
            from edge_fas.calibration import register_to_color
            registered = register_to_color(frames)
        distance = face_distance(registered, box)
        if distance is None:
            issues.append("no depth on the face")
        elif not min_distance_m <= distance <= max_distance_m:
            issues.append(f"face at {distance:.2f} m, outside {min_distance_m:.2f}-{max_distance_m:.2f} m")
    return FaceCheck(box is not None, distance, present, box, issues)


class TakeRecorder:
    """Writes one take through a session writer on its own thread, from a bounded queue.

    put(frames) never blocks the caller for long: if the queue stays full for `put_timeout_s` the
    disk cannot keep up, so the take is stopped cleanly (every frame accepted so far is written) and
    `stopped_reason` says why; later put() calls then raise CollectError instead of dropping frames.
    """

    def __init__(self, writer, spec: TakeSpec, queue_frames: int = 120, put_timeout_s: float = 1.0):
        spec.check()
        self.writer = writer
        self.spec = spec
        self.put_timeout_s = put_timeout_s
        self.frames_written = 0
        self.frames_queued = 0
        self._closed = False
        self._lock = threading.Lock()  # put() and finish() exclude each other: no frame after the end
        self.stopped_reason: str | None = None
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._sensor: dict = {}  # {stream: {key: [values]}} of the frames accepted: the take's camera settings
        take = writer.begin_take(label=spec.label, species=spec.species, subject_id=spec.subject_id,
                                 consent=spec.consent, notes=spec.notes)
        self.take_id = getattr(take, "id", None)  # the session's take number (after its earlier ones when appending)
        self._thread = threading.Thread(target=self._run, name="take-writer", daemon=True)
        self._thread.start()

    def put(self, frames: FrameSet) -> None:
        with self._lock:
            if self._closed:
                raise CollectError("the take has ended; start a new one")
            if self.stopped_reason is not None:
                raise CollectError(f"the take was stopped: {self.stopped_reason}")
            try:
                self._queue.put(frames, timeout=self.put_timeout_s)
            except queue.Full:
                self.stopped_reason = (f"the disk cannot keep up ({self._queue.maxsize} frames waiting); "
                                       f"the take was stopped after {self.frames_queued} frames")
                raise CollectError(self.stopped_reason) from None
            self.frames_queued += 1
            sensor_values(frames.meta, self._sensor)

    def settings(self) -> dict:
        """The take's camera settings so far: {stream: {key: {min, median, max, n}}} (drivers/summary.py)."""
        with self._lock:
            return setting_ranges(self._sensor)

    def _run(self) -> None:
        while True:
            frames = self._queue.get()
            if frames is None:
                return
            if self.error is not None:
                continue  # keep draining so put() and finish() do not hang
            try:
                self.writer.write(frames)
                self.frames_written += 1
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.error = exc
                self.stopped_reason = f"writing failed: {exc}"

    def finish(self) -> int:
        """Write everything queued, end the take; returns the number of frames written."""
        with self._lock:
            if self._closed:
                return self.frames_written
            self._closed = True
        self._queue.put(None)
        self._thread.join()
        self.writer.end_take()
        if self.error is not None:
            raise CollectError(f"the take could not be written completely: {self.error}") from self.error
        return self.frames_written


def open_session_writer(path, camera, spec: TakeSpec, retention_days: int | None = None, operator: str = "",
                        append: bool = False):
    """helper C's SessionWriter for this camera, with site, domain, operator and the date by which the
    session must be deleted (`delete_after`, next to `created` and `retention_days` in session.yaml).
    retention_days None: 365 for a new session; a session appended to keeps its own (append=True adds takes
    to the session at `path` when there is one; SessionWriter refuses another camera's)."""
    import datetime as dt

    from edge_fas.drivers.session import SessionWriter, is_session
    if retention_days is not None and retention_days < 1:
        raise CollectError(f"retention of {retention_days} days: give --retention-days of at least 1 "
                           "(the session records the date by which it must be deleted)")
    if retention_days is None and not (append and is_session(path)):
        retention_days = DEFAULT_RETENTION_DAYS
    extra = {}
    if retention_days is not None:
        extra["delete_after"] = (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=retention_days)).isoformat()
    return SessionWriter(path, camera.device, camera.calibration, site=spec.site, domain=spec.domain,
                         operator=operator, retention_days=retention_days, extra=extra,
                         require_consent=not spec.synthetic, append=append)


def record_take(frames_iter, writer, spec: TakeSpec, n_frames: int, detector=None, wait_frames: int = 0,
                min_distance_m: float = 0.25, max_distance_m: float = 1.5, queue_frames: int = 120,
                report=print) -> int:
    """The CLI take: optionally wait (up to `wait_frames`) for a passing face check, then record
    `n_frames` frames. `report(str)` receives the face check about once a second and the outcome."""
    spec.check()
    frames_iter = iter(frames_iter)
    if detector is not None and wait_frames > 0:
        for i in range(wait_frames):
            check = face_check(next(frames_iter), detector, min_distance_m, max_distance_m)
            if check.ok:
                report(f"face check passed: {check.text()}")
                break
            if i % 30 == 0:
                report(f"waiting for the subject: {check.text()}")
        else:
            raise CollectError(f"the face check did not pass within {wait_frames} frames ({check.text()}); "
                               "place the subject in view, or pass --no-face-check to record anyway")
    recorder = TakeRecorder(writer, spec, queue_frames=queue_frames)
    try:
        for i, frames in zip(range(n_frames), frames_iter):
            recorder.put(frames)
            if detector is not None and i % 30 == 0:
                report(f"recording {i}/{n_frames}: {face_check(frames, detector, min_distance_m, max_distance_m).text()}")
    finally:
        written = recorder.finish()
    report(f"take written: {written} frames, subject {spec.subject_id}, species {spec.species}")
    return written
