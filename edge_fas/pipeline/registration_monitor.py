"""A running registration check on the faces the pipeline judges: is the calibration still this camera's?

`edge-fas calibrate --check` measures the registration once, when a site installs its camera. A camera knocked
on its mount, or a `calibration.file` made for another unit of the same model, then goes on registering depth
and IR to the wrong colour pixels without a word, and that is not fail-closed: bench_miscalibration.py measured
the physics check passing twice as many rigid masks, because misregistered depth adds relief at the face's border.

So while the pipeline runs, once every `interval_s` of camera time, the monitor measures the misalignment of the
registered depth outlines around the tracked face (the head and shoulders against the room) against the colour
edges there (`calibration.check.measure_registration`: a shift T, the depth camera's outline growth apart). A
stream wider than the 640 pixels its rules were chosen at is read at that width (`read_at_reference_width`).

One face's readings are not enough. A right calibration reads more than 5 px on about one face in twelve on the
synthetic rig: hair that depth does not see on one side of the head, a noisy outline. Those faces read the same
all the while they stand there, so a window of readings from one person who stays would fail a right rig. A
wrong calibration moves every face's outline the same way. So the monitor sums up each face (the pipeline tells
it when the tracked face changes) by the per-axis median of its readings (at least READINGS_PER_FACE), keeps the
last `faces` faces, and refuses when, with at least `min_faces` (2) of them, the per-axis median of their shifts is
longer than `limit_px` (pixels of a 640-pixel-wide colour image; scaled with the image's width). Then every
frame gets the fault `registration_drift` (`unknown`, never `live`; the kiosk shows "Out of service") until
the faces' median comes back within half the limit, with at least `min_faces` faces read that came after the
refusal began (the face being read then cannot release it: see `_fresh_faces`). A reading counts when its fit
explains enough outline pixels (MIN_MATCHED_PX, MIN_SHARE).

Past the search's reach (a camera knocked hard, another model's calibration: outlines 50 px and more apart) the
readings stop agreeing: few explain enough of the outline, and those that do point every way, so the per-axis median
stays small. With the baseline 60 mm off the check never refused on development seeds while paper masks passed the
physics check on 42 of 90 frames. So each face is also summed up by how far apart its outlines read, whatever the
direction: the median length of all its readings that matched SEEN_PX outline pixels and explained SEEN_SHARE of
their outline (far less than MIN_SHARE). When, over at least `min_faces` faces and APART_MIN_FACES (3), the median of
those lengths passes APART times the limit, the monitor refuses as well.
On development seeds 20-21 of six domains (the pipeline's own readings), that median over five faces stayed at 6 px
or less (the limit) with the true calibrations; wrong ones of 25 mm or 2 degrees reached 12-25 px at their highest,
knocks of 60 mm or 5-10 degrees 13-51 px. (Those figures were for the length of a face's per-axis median, the first
summary. A tracker that keeps one face over several people pools readings that point every way, which cancel out
in that; a camera turned 5 degrees was never refused so. With the median length, right cameras on seeds 20-23 and
44-49 read at most 10.8 px of the 12: docs/deployment.md. The pipeline tells the check of a new face when the box
changes, not when the tracker tells a new person by look: a face per person refused a right camera on development
seeds.)

A view with no outline to measure counts for nothing: no reading, no fault; nor does a face that left before it was
read READINGS_PER_FACE times. Faces the physics check found flat (a print, a phone) are read: a sheet's outline is real
in depth and colour (UNREAD_FINDINGS, empty, says why). A camera whose views rarely give a reading (readings under
MIN_MATCHED_PX outline pixels: a wall right behind the visitors, smooth or sparse depth) leaves the check unable to
judge, and that must not pass unseen: the check is *blind* while, of the last BLIND_FACES faces it had time for (read
READINGS_PER_FACE times, explained or not; from BLIND_START faces on), fewer than `min_faces` could be summed up, i.e.
the drift rule could not have judged from them. Blindness is reported (`blind()`, `state()` on every event, the
summary, the status file, `edge-fas doctor`, the development window, a warning in the log) and by default not refused:
the frames are still judged by everything else, and some right cameras of the synthetic rig were blind on up to 2% of a
day's faces (docs/deployment.md). A site that would rather turn visitors away than judge them unchecked sets
`calibration.monitor_blind: refuse`: while blind, every frame gets the fault `registration_unchecked` ("Out of
service"), until faces read again (the readings go on while frames are refused). A check that fails for any other
reason (a bug) is a `pipeline_error` on every frame, never a silent monitor.

With a `state_file` (calibration.monitor_state_file) the faces and the refusal outlive a restart: a camera pulled
out and put back, a crash or a power cut would otherwise let the next `min_faces` faces be judged with a wrong
calibration. So do the last faces' read-or-not (a service restarted every night would otherwise never see the
BLIND_START faces it takes to say it is blind). The file is rewritten (atomically) when a face's summary, the drift,
the refusal or those faces change. It holds
for the calibration it was written with: the first frame with a face names its calibration, camera serial and
width (`state_key`); on another one (the rig calibrated again, another camera) the monitor starts empty. Until
that frame a saved refusal stands.

In live mode the check runs on its own thread (about 50 ms of CPU per reading), at the lowest scheduling priority
(NICE) so that the camera and the decisions get the cores first, and never delays a frame. Where that starves it (a
reading waiting more than STARVED_S: a saturated CPU) the check is not running, and every frame is a
`pipeline_error` until it catches up;
`offer(..., synchronous=True)` (replays judged frame by frame, `Pipeline.process`) runs it in the caller's
thread at the same camera times, so the same recording gives the same verdicts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from edge_fas.calibration.check import REFERENCE_WIDTH_PX, measure_registration, read_at_reference_width
from edge_fas.errors import CalibrationError, ConfigError
from edge_fas.pipeline import decision as D
from edge_fas.pipeline.decision import reason
from edge_fas.pipeline.mailbox import Mailbox

log = logging.getLogger(__name__)

BOX_MARGIN = 0.3  # the face box grown by this share of its size on each side: the head's outline and the room
READINGS_PER_FACE = 2  # a face read fewer times says nothing (one frame of a turning head, a hand passing)
KEPT_PER_FACE = 20  # a face that stays is summed up by its latest readings
# A reading counts for the drift when its fit explains calibrate --check's MIN_MATCHED_PX outline pixels and this share
# of them (RegistrationCheck.explains; calibrate --check asks the same 10%). It was 3%, for cameras misregistered by
# 10 px or more on noisy depth (3-9% explained); since the far-apart rule reads those whatever they explain, a low
# floor only let in readings that say nothing: a face shown on a phone or a print has colour edges with no depth
# outline behind them, and its readings (4-9% explained) were 6-50 px off with a right calibration. At 3% they
# refused right cameras (rand_test 55, 56); at 10% no wrong calibration was refused later or in fewer runs
# (development seeds 20-21 and 52-53, then fresh seeds 56-57; docs/deployment.md).
MIN_SHARE = 0.10
SEEN_PX = 50  # a reading that matched this many outline pixels counts for how far apart a face's outlines lie
# ... and explained at least this share of its outline. A face shown on a phone or a print gives colour edges with no
# depth outline behind them: 10-15% of such readings explained under 2% (faces' readings, even under knocks of 60 mm
# or 5 degrees, almost never did), and three of them with one weak face had the far-apart rule refuse a right camera
# (fresh seeds 66-67, rand_test 66). At 2% no wrong calibration was refused on fewer of the logged runs (54-59,
# 64-67). Raised to 5%: a right camera whose people's readings explained 1-5% and read 6-21 px off was refused by
# this rule (fresh seeds 72-73, rand_test 73); at 5% no wrong calibration was refused on fewer runs of 64-69 and 72-73
# at 640x480 or of 64-67 at 1280x720, first refusals at most a take later (docs/deployment.md)
SEEN_SHARE = 0.05
APART = 2.0  # ... and the faces' median of that, in any direction, refuses past this many times the limit
# ... and never on fewer faces than this, nor than min_faces (a floor for that rule alone): with two faces the median is
# their mean, and one right camera's single odd face (30 px apart, `padisi` 46) was a false alarm. The drift rule
# refuses from min_faces (2): chosen on development seeds 20-21, measured on fresh seeds 52-53 (docs/deployment.md)
APART_MIN_FACES = 3
# Frames whose physics findings include every code of one of these groups are not read (nor counted as faces the check
# failed to read); the pipeline offers faces after the physics check, with its findings. None, measured: leaving out
# faces found flat (a print, a phone held up) cleared a right camera that a phone's readings (7-50 px off) had refused
# on development seeds, but a print's sheet has a real outline in depth and colour, read at its own distance: on fresh
# seeds 74-75 it was the only drift evidence on some cameras, and leaving it out let another unit's file go unrefused on
# 2 more of 12 cameras and a 1 degree turn on 1 more (docs/deployment.md). Refusing a right camera fails closed; missing
# a wrong one does not. Nor screens alone (flat and dark in near-IR): on 74-75 another unit's file went unrefused on 1
# more camera.
UNREAD_FINDINGS: tuple[frozenset, ...] = ()  # groups of codes: a frame with every code of a group is not read
RELEASE = 0.5  # once refusing, faces must read within this share of the limit before frames are judged again
# The monitor's thread runs this much lower in priority than the pipeline's (19: the lowest): on 2 cores a reading at
# the same priority raised the decisions' p95 latency from ~33 to ~57 ms, at 19 to ~41 ms (6 runs each, the demo).
NICE = 19
# ... and if that starves it (a saturated CPU), the check is not running: frames are refused while a reading handed
# to its thread has waited this long (seconds of wall time; a face needs READINGS_PER_FACE readings within its stay)
STARVED_S = 2.0
# The check is blind while, of the last BLIND_FACES faces it had time for, fewer than min_faces were summed up (from
# BLIND_START such faces on): chosen on the readings of development seeds 20-21 and 52-53 (docs/deployment.md)
BLIND_FACES = 20
BLIND_START = 10
BLIND_ACTIONS = ("report", "refuse")  # calibration.monitor_blind: what a blind check does besides saying so
SAVE_STEP_PX = 0.5  # the state file is rewritten when a face's summary or the drift moves by this much
STATE_VERSION = 1


def state_key(reg) -> str:
    """What registered these frames: the calibration (None: the camera registered them itself), the camera's model
    and serial, and the colour image's width. A saved state holds only for frames with the same key."""
    calibration = getattr(reg, "calibration", None)
    device = getattr(reg, "device", None)
    what = {"calibration": None if calibration is None else calibration.to_dict(),
            "camera": [getattr(device, "model", ""), getattr(device, "serial", "")],
            "width": int(reg.rgb.shape[1])}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _face_medians(by_face: dict) -> list[np.ndarray]:
    """Per face read READINGS_PER_FACE times or more, the per-axis median of its shifts (oldest face first)."""
    return [np.median(np.asarray(v), axis=0) for v in by_face.values() if len(v) >= READINGS_PER_FACE]


def _face_aparts(by_face: dict) -> list[float]:
    """Per face read READINGS_PER_FACE times or more, how far apart its outlines read whatever the direction: the
    median of its shifts' lengths (oldest face first). Not the length of their per-axis median: readings that point
    every way (past the search's reach) cancel out in that."""
    return [float(np.median(np.hypot(*np.asarray(v, np.float64).T))) for v in by_face.values()
            if len(v) >= READINGS_PER_FACE]


def blind_counts(recent: list, min_faces: int) -> tuple[int, int] | None:
    """(faces read, faces seen) when the last faces the check had time for (read or not, oldest first; at most
    BLIND_FACES) leave it blind, else None."""
    read = sum(bool(v) for v in recent)
    return (read, len(recent)) if len(recent) >= BLIND_START and read < min_faces else None


def blind_text(read: int, seen: int, min_faces: int, refuses: bool = False) -> str:
    """What a blind check says (the log, the summary, `edge-fas doctor`); `refuses`: calibration.monitor_blind is
    `refuse`, so frames are refused while it is blind."""
    then = (f"every frame is refused (calibration.monitor_blind: refuse) until {min_faces} of them read again"
            if refuses else "frames are still judged by everything else")
    return (f"the running registration check is blind: of the last {seen} faces it had time for, {read} gave "
            f"readings it could use (it needs {min_faces} to judge), so a camera moved on its mount or "
            f"another camera's calibration would go unnoticed; {then}. The "
            "check reads depth outlines of head and shoulders against the room: look at what stands right behind "
            "the visitors, then run edge-fas calibrate --check with a person in view")


def narrow_text(width: int) -> str | None:
    """What to say when the colour stream is narrower than the check was validated on (None: it is not)."""
    if width >= REFERENCE_WIDTH_PX:
        return None
    return (f"the running registration check was validated on colour {REFERENCE_WIDTH_PX} pixels wide, this stream "
            f"is {width}: at 320x240 on the synthetic rig it refused 4 of 12 right cameras (the kiosk turns everyone "
            "away) and read too few faces on half of them (outlines too short, one pixel too coarse for its limit); "
            "run the colour stream at 640x480 or wider (camera.width, camera.height)")


def _yield_cpu() -> None:
    """Lower the calling thread's scheduling priority by NICE (Linux keeps a nice value per thread), so that where
    cores are short the camera and the decisions get them first and a reading waits; elsewhere nothing changes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE))
    except (AttributeError, OSError):  # no per-thread priorities here (not Linux), or not allowed
        pass


class RegistrationMonitor:
    def __init__(self, limit_px: float = 6.0, faces: int = 5, min_faces: int = 2, interval_s: float = 0.5,
                 measure=None, state_file: str | os.PathLike | None = None, blind: str = "report",
                 reference_view: bool = True):
        if faces < 1 or not 1 <= min_faces <= faces:
            raise ValueError(f"registration monitor: min_faces {min_faces} must be within 1..faces ({faces})")
        if blind not in BLIND_ACTIONS:
            raise ValueError(f"registration monitor: blind {blind!r}: expected one of {', '.join(BLIND_ACTIONS)}")
        self.blind_refuses = blind == "refuse"  # a blind check refuses every frame, not only says so
        self.reference_view = reference_view  # read wider streams at REFERENCE_WIDTH_PX (read_at_reference_width)
        self.limit_px = float(limit_px)
        self.faces = int(faces)
        self.min_faces = int(min_faces)
        self.interval_ms = float(interval_s) * 1000.0
        self._measure = measure or measure_registration  # injectable for tests
        self._by_face: dict[int, deque] = {}  # face -> its latest shifts (insertion order: oldest face first)
        self._seen_by_face: dict[int, deque] = {}  # ... of every reading that matched SEEN_PX, explained or not
        self._shifts: list[tuple[float, float]] = []  # what face_shifts() returns, updated with each reading
        self._drift: tuple[float, float] | None = None  # what drift() returns, updated with each reading
        self._aparts: list[float] = []  # how far apart each face's outlines read, whatever the direction (APART)
        self._apart: float | None = None  # the median of _aparts (None until min_faces faces were read)
        self._lock = threading.Lock()
        self._face = 0
        self._width: int | None = None
        self._next_ms: float | None = None
        self._error: str | None = None
        self._refusing = False
        self._refused_by: str | None = None  # which rule refuses: "drift", "apart" (None: a refusal kept across a restart)
        self._refused_from = -1  # the face being read when the refusal began (-1: before any: kept across a restart)
        self._held = False  # refusing only until enough faces that came after the refusal read right
        self._narrow_said = False  # whether a colour stream narrower than validated was warned of
        self.taken = 0  # frames measured
        self.unmeasurable = 0  # ... whose view had no outline to measure
        self._tries: dict[int, list[int]] = {}  # face -> [readings taken, readings explained] (the latest faces)
        self.faces_seen = 0  # faces read READINGS_PER_FACE times, explained or not, since the start
        self.faces_read = 0  # ... of which that many readings explained their outline (summed up for the drift)
        self._blind: tuple[int, int] | None = None  # (faces read, faces seen) of the last BLIND_FACES while blind
        self._recent: list[bool] = []  # of the last BLIND_FACES faces it had time for (oldest first): read or not
        self._restored_read: list[bool] = []  # ... those of the runs before a restart (the state file keeps them)
        self._mailbox: Mailbox | None = None
        self._thread: threading.Thread | None = None
        self.starved_s = STARVED_S
        self._busy_since: float | None = None  # time.monotonic() since which readings have been behind (None: idle)
        self._puts = 0  # readings handed to the thread
        self._restored: list[tuple[float, float]] = []  # faces summed up before the restart (oldest first)
        self._restored_aparts: list[float] = []  # ... and how far apart their outlines read
        self._key: str | None = None  # state_key of the frames read
        self._state_file = Path(state_file) if state_file else None
        self._saved_key: str | None = None  # the key the state file was written for, until the first frame says
        self._last_saved: dict | None = None
        self._save_failed = False
        if self._state_file is not None:
            self._load_state()

    @classmethod
    def from_config(cls, calibration_config) -> "RegistrationMonitor | None":
        c = calibration_config
        if not c.monitor:
            return None
        return cls(c.monitor_limit_px, c.monitor_faces, c.monitor_min_faces, c.monitor_interval_s,
                   state_file=c.monitor_state_file, blind=c.monitor_blind)

    # -- feeding ----------------------------------------------------------------------------------
    def new_face(self) -> None:
        """The tracked face changed (another person, or the same one back after a gap): readings from now on are
        another face's."""
        self._face += 1

    def offer(self, reg, box, synchronous: bool = False, findings=()) -> None:
        """A registered frame set with the tracked face's box: measured when `interval_s` of camera time has passed
        since the last one taken (the frame's own timestamp, so a replay samples the same frames every run), on the
        monitor's thread, or in this one when `synchronous`. findings: the physics check's reason codes for this
        frame; a frame with every code of one of UNREAD_FINDINGS' groups is not read (the next frame due is)."""
        if box is None or reg is None or not reg.registered or reg.rgb is None or reg.depth is None:
            return
        if any(group <= set(findings) for group in UNREAD_FINDINGS):
            return
        self._width = int(reg.rgb.shape[1])
        if not self._narrow_said:  # said once, at the first frame
            self._narrow_said = True
            if narrow_text(self._width):
                log.warning("registration monitor: %s", narrow_text(self._width))
        t = float(reg.timestamp_ms)
        due = self._next_ms is None or not self._next_ms - self.interval_ms <= t < self._next_ms
        if self._state_file is not None and (due or self._key is None):  # whose registration: first frame, readings
            self._check_key(state_key(reg))
        if not due:
            return  # (a timestamp that jumps back, a new recording, starts the interval again)
        self._next_ms = t + self.interval_ms
        if synchronous:
            self._take(reg, box, self._face)
            return
        if self._thread is None:
            self._mailbox = Mailbox()
            self._thread = threading.Thread(target=self._loop, name="edge-fas-registration", daemon=True)
            self._thread.start()
        with self._lock:
            now = time.monotonic()
            if self._busy_since is None:
                self._busy_since = now
            self._puts += 1
            item = (reg, box, self._face, self._puts, now)
        self._mailbox.put(item)  # a reading still waiting is replaced by the newer frame

    def _loop(self) -> None:
        _yield_cpu()
        while True:
            item = self._mailbox.get()
            if item is None:
                return
            reg, box, face, put, put_at = item
            self._take(reg, box, face)
            with self._lock:  # caught up: idle; else behind since this reading was handed over
                self._busy_since = None if self._puts == put else put_at

    def _starved(self, since: float | None) -> str | None:
        """Why the check is not keeping up (its thread gets no CPU), or None. since: _busy_since."""
        waited = 0.0 if since is None else time.monotonic() - since
        if waited <= self.starved_s:
            return None
        return (f"registration monitor starved: a reading has waited {waited:.1f} s (limit {self.starved_s:g} s): the "
                "CPU is saturated and the running check cannot keep up; lighten the load (a faster runtime, other "
                "work off this machine)")

    def _take(self, reg, box, face: int) -> None:
        x0, y0, x1, y1 = (float(v) for v in box)
        mx, my = BOX_MARGIN * (x1 - x0), BOX_MARGIN * (y1 - y0)
        try:
            grown = (x0 - mx, y0 - my, x1 + mx, y1 + my)
            r = (read_at_reference_width(self._measure, reg, grown) if self.reference_view
                 else self._measure(reg, grown, overlay=False))
        except CalibrationError:  # no outline in view
            r = None
        except Exception as e:  # a bug must not switch the check off unseen
            log.exception("registration monitor: the check failed")
            with self._lock:
                self._error = f"registration monitor failed: {e!r}"
            return
        with self._lock:
            self.taken += 1
            explained = r is not None and r.explains(MIN_SHARE)
            if not explained:
                self.unmeasurable += 1
            self._count(face, explained)
            if r is None or r.matched_pixels < SEEN_PX or r.matched < SEEN_SHARE:
                return
            shift = float(r.shift_px[0]), float(r.shift_px[1])
            self._keep(self._seen_by_face, face, shift)
            if explained:
                self._keep(self._by_face, face, shift)
            self._judge([(float(dx), float(dy)) for dx, dy in _face_medians(self._by_face)],
                        _face_aparts(self._seen_by_face), face=face)

    def _count(self, face: int, explained: bool) -> None:
        """A reading taken of `face` (explained or not) -> the faces seen and read, and whether the check is blind.
        Holds the lock."""
        tries = self._tries.setdefault(face, [0, 0])
        tries[0] += 1
        tries[1] += explained
        self.faces_seen += tries[0] == READINGS_PER_FACE
        self.faces_read += explained and tries[1] == READINGS_PER_FACE
        while len(self._tries) > BLIND_FACES + 1:  # the faces not yet seen long enough stay out of the count
            del self._tries[next(iter(self._tries))]
        self._recent = (self._restored_read + [t[1] >= READINGS_PER_FACE for t in self._tries.values()
                                               if t[0] >= READINGS_PER_FACE])[-BLIND_FACES:]
        blind = blind_counts(self._recent, self.min_faces)
        if (blind is None) != (self._blind is None):
            if blind is not None:
                log.warning("registration monitor: %s", blind_text(*blind, self.min_faces, self.blind_refuses))
            else:
                log.info("registration monitor: reading faces again (%d of the last %d)", sum(self._recent),
                         len(self._recent))
        self._blind = blind

    def state(self) -> str:
        """In one word, for every event (`health.registration_check`): `refusing`, `blind`, `judging` (min_faces
        faces summed up), or `waiting` (fewer so far)."""
        with self._lock:
            if self._refusing:
                return "refusing"
            if self._blind is not None:
                return "blind"
            return "judging" if len(self._shifts) >= self.min_faces else "waiting"

    def blind(self) -> str | None:
        """Why the check cannot judge this camera's faces (see the module's doc), or None."""
        with self._lock:
            return None if self._blind is None else blind_text(*self._blind, self.min_faces, self.blind_refuses)

    def _keep(self, by_face: dict, face: int, shift: tuple[float, float]) -> None:
        """A face's reading into `by_face`, which keeps the last `faces` faces and the one being read."""
        if face not in by_face:
            by_face[face] = deque(maxlen=KEPT_PER_FACE)
        by_face[face].append(shift)
        while len(by_face) > self.faces + 1:
            del by_face[next(iter(by_face))]

    def _fresh_faces(self) -> int:
        """Faces read READINGS_PER_FACE times that began after the refusal did. Only they release it: the face being
        read when it began goes on in the same box, and a new take there (an attacker who steps in where the last
        person stood, a mask put on) stays that face. On fresh seeds 58-59 a paper mask's own readings, in the box of
        the bona fide face that had tipped the refusal, pulled that face's median back within half the limit, and
        the mask was judged live on 27 frames under a wrong calibration."""
        return sum(1 for f, v in self._seen_by_face.items() if f > self._refused_from and len(v) >= READINGS_PER_FACE)

    def _judge(self, live: list[tuple[float, float]], aparts: list[float], save: bool = True, face: int = -1) -> None:
        """The last `faces` faces (restored ones first) -> drift, how far apart, and refusal; the state file when they
        moved. face: the face being read (a refusal that begins now begins at it). Holds the lock."""
        self._shifts = (self._restored + live)[-self.faces:]
        self._aparts = (self._restored_aparts + aparts)[-self.faces:]
        if len(self._shifts) >= self.min_faces:
            dx, dy = np.median(np.asarray(self._shifts), axis=0)
            self._drift = float(dx), float(dy)
        if len(self._aparts) >= max(self.min_faces, APART_MIN_FACES):
            self._apart = float(np.median(self._aparts))
        if self._drift is not None or self._apart is not None:
            # once refusing it goes on until the faces' median is within RELEASE of the limit: a wrong calibration
            # whose faces read near the limit does not flicker between refusing and judging
            scale = self.limit * (RELEASE if self._refusing else 1.0)
            drift = self._drift is not None and np.hypot(*self._drift) > scale
            apart = self._apart is not None and self._apart > APART * scale
            refusing = bool(drift or apart)
            self._held = self._refusing and not refusing and self._fresh_faces() < self.min_faces
            if self._held:
                refusing = True  # released only by faces that came after the refusal (see _fresh_faces)
            else:
                self._refused_by = "drift" if drift else "apart" if apart else None
            if refusing and not self._refusing:
                self._refused_from = face
            self._refusing = refusing
        if save:
            self._save_state()

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
        """limit_px (pixels of a REFERENCE_WIDTH_PX-wide image) at this image's width, narrower ones too (they are read
        natively, and warned of); calibration.check.limit_px, for calibrate --check, scales only wider streams."""
        return self.limit_px * (self._width or REFERENCE_WIDTH_PX) / REFERENCE_WIDTH_PX

    def faults(self) -> list[str]:
        """[] while the registration holds (or too few faces were read yet); else the fault for every frame (each
        reading decides, `_judge`)."""
        with self._lock:  # once per frame: everything it needs at one go
            error, since = self._error, self._busy_since
            refusing, by, d, apart = self._refusing, self._refused_by, self._drift, self._apart
            faces = len(self._shifts) if by == "drift" else len(self._aparts)
            held = self._held
            fresh = self._fresh_faces() if held else 0  # (only then: this runs for every frame)
            blind = self._blind if self.blind_refuses else None
        if error is not None:
            return [reason(D.PIPELINE_ERROR, error)]
        starved = self._starved(since)
        if starved:
            return [reason(D.PIPELINE_ERROR, starved)]
        if not refusing:
            return [] if blind is None else [reason(D.REGISTRATION_UNCHECKED,
                                                    blind_text(*blind, self.min_faces, refuses=True))]
        release = (f"frames are judged again once {self.min_faces} faces that came after the refusal read within "
                   f"{RELEASE * self.limit:g} px")
        if held:  # the faces read right again, but not yet enough of them came after the refusal
            return [reason(D.REGISTRATION_DRIFT,
                           f"depth lay off the colour image beyond the limit ({self.limit:g} px) and {fresh} of the "
                           f"faces since have been read: the camera moved on its mount or calibration.file is another "
                           f"camera's; run edge-fas calibrate --check ({release})")]
        if by == "drift":
            where = f"{np.hypot(*d):.1f} px "
        elif by == "apart":  # outlines far apart, in no direction the faces agree on
            where = f"{apart:.1f} px (farther than the check reads: the faces' readings point every way) "
        else:  # a refusal kept across a restart, before its faces were judged again
            where = ""
        return [reason(D.REGISTRATION_DRIFT,
                       f"depth lies {where}off the colour image around the last {faces} faces (limit {self.limit:g} "
                       "px): the camera moved on its mount or calibration.file is another camera's; run edge-fas "
                       f"calibrate --check ({release})")]

    def summary(self) -> dict:
        """For counters and reports: faces summed up, the median shift's length, frames measured, unmeasurable, faces
        seen and read since the start, and whether the check is blind."""
        d = self.drift()
        faces = len(self.face_shifts())
        with self._lock:
            out = {"faces": faces, "drift_px": None if d is None else round(float(np.hypot(*d)), 2),
                   "apart_px": None if self._apart is None else round(self._apart, 2), "refusing": self._refusing,
                   "taken": self.taken, "unmeasurable": self.unmeasurable, "faces_seen": self.faces_seen,
                   "faces_read": self.faces_read, "blind": self._blind is not None}
            if self._blind is not None:
                out["blind_detail"] = blind_text(*self._blind, self.min_faces, self.blind_refuses)
            if self._state_file is not None:
                out["restored_faces"] = len(self._restored)
                out["state_file"] = str(self._state_file)
            return out

    # -- the state kept across restarts ---------------------------------------------------------------
    def _load_state(self) -> None:
        """Take the faces and the refusal a previous run saved; check the file can be written (ConfigError naming the
        key otherwise). An unreadable file is moved aside (nothing is deleted) and the monitor starts empty."""
        path = self._state_file
        saved = None
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                if saved.get("version") != STATE_VERSION:
                    raise ValueError(f"version {saved.get('version')!r}, expected {STATE_VERSION}")
                faces = [(float(dx), float(dy)) for dx, dy in saved["faces"]]
                aparts = [float(v) for v in saved.get("apart", [])]  # (files of before this summary: none)
                recent = [bool(v) for v in saved.get("recent_read", [])]  # (... and before the blindness rule)
                refusing, key = bool(saved["refusing"]), str(saved["key"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                aside = path.with_name(path.name + ".unreadable")
                log.warning("calibration.monitor_state_file %s is unreadable (%s); moved to %s, the running "
                            "registration check starts empty", path, e, aside)
                os.replace(path, aside)
                saved = None
        if saved is not None:
            self._restored, self._refusing, self._saved_key = faces[-self.faces:], refusing, key
            self._restored_aparts = aparts[-self.faces:]
            self._restored_read = self._recent = recent[-BLIND_FACES:]
            self._blind = blind_counts(self._recent, self.min_faces)  # says so at start, not 10 faces later
            self._width = int(saved.get("width") or REFERENCE_WIDTH_PX)
            with self._lock:
                self._judge([], [], save=False)
        try:
            self._write_state(self._state())
        except OSError as e:
            raise ConfigError(f"calibration.monitor_state_file: cannot write {path} ({e.strerror or e}); make its "
                              "folder writable by the service's user, or set another path") from e

    def _check_key(self, key: str) -> None:
        """The first frame read (and any frame whose calibration, camera or width changed) names its registration:
        a state saved or gathered for another one is dropped."""
        if key == self._key:
            return
        with self._lock:
            previous = self._key or self._saved_key
            if previous is not None and previous != key:
                log.warning("registration monitor: the frames' calibration, camera or width is not the one its "
                            "faces were read with (%s, now %s); the running check starts empty", previous, key)
                self._restored, self._by_face, self._seen_by_face, self._shifts = [], {}, {}, []
                self._restored_aparts, self._aparts, self._apart = [], [], None
                self._drift, self._refusing, self._refused_by, self._refused_from = None, False, None, -1
                self._tries, self._blind, self._recent, self._restored_read = {}, None, [], []
            self._key = key
            self._save_state()

    def _state(self) -> dict:
        return {"version": STATE_VERSION, "key": self._key or self._saved_key, "width": self._width,
                "faces": [[round(dx, 2), round(dy, 2)] for dx, dy in self._shifts],
                "apart": [round(v, 2) for v in self._aparts], "refusing": self._refusing,
                "recent_read": [int(v) for v in self._recent],
                "drift_px": None if self._drift is None else round(float(np.hypot(*self._drift)), 2),
                "apart_px": None if self._apart is None else round(self._apart, 2), "saved": time.time()}

    def _save_state(self) -> None:
        """Rewrite the state file when the faces, the drift or the refusal moved (SAVE_STEP_PX). Holds the lock. A
        failed write is logged once; the check goes on in memory."""
        if self._state_file is None:
            return
        state = self._state()
        coarse = lambda st: (st["key"], st["refusing"], st["width"],  # noqa: E731
                             [tuple(round(v / SAVE_STEP_PX) for v in f) for f in st["faces"]],
                             [round(v / SAVE_STEP_PX) for v in st["apart"]], st["recent_read"])
        if self._last_saved is not None and coarse(self._last_saved) == coarse(state):
            return
        try:
            self._write_state(state)
        except OSError:
            if not self._save_failed:
                log.exception("registration monitor: cannot write %s; a restart will start the check empty",
                              self._state_file)
            self._save_failed = True

    def _write_state(self, state: dict) -> None:
        tmp = self._state_file.with_name(self._state_file.name + ".tmp")
        tmp.write_text(json.dumps(state) + "\n")
        os.replace(tmp, self._state_file)
        self._last_saved = state
        self._save_failed = False
