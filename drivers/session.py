"""The portable session format: labelled field recordings that training reads directly.

A session is a folder:

    session.yaml                 format version, device, calibration, site, domain, operator, notes,
                                 retention_days, created, and the list of takes with their labels;
                                 calibration_history: what `recalibrate` (edge-fas calibrate --apply) replaced
    takes/0001/frames.jsonl      one JSON line per frame: index, timestamps, counters, depth_scale,
                                 files, meta (with each stream's exposure, gain and laser power
                                 where the camera reports them), truth (when the source had one)
    takes/0001/rgb/000000.png    colour (lossless PNG, or JPEG with color_codec="jpeg")
    takes/0001/depth/000000.png  16-bit PNG depth, raw units (metres = value * depth_scale)
    takes/0001/ir/000000.png     PNG IR, 8 or 16 bit as captured

Appending: SessionWriter(path, ..., append=True) adds takes to the session at `path` (a new one where there is
none), numbered after its takes, interrupted ones included. Only the camera it was recorded with may append, with
the same calibration, site, domain and operator, since every reader registers all of a session's takes with its one
calibration and counts them in its one domain; anything else is refused with what differs. `.writer.lock` marks a
folder a writer has open: a second writer (or `recalibrate`) is refused while it runs, and a lock whose process is
gone from this machine is taken over.

Crash safety: a frame's images are written first and its JSON line last (flushed), so a reader takes a
frame as whole exactly when its line is complete; a take interrupted by a crash or a pulled cable
reads up to its last whole frame. session.yaml is rewritten atomically (temp file + rename) at every
take boundary; a take missing its end in session.yaml is read from its frames.jsonl and marked
`complete: False`.

Writing (one thread; drivers/recorder.py puts it behind a queue for live capture):

    w = SessionWriter("field/site1_day3", device=cam.device, calibration=cam.calibration,
                      site="site1", domain="lobby", operator="op7", retention_days=90)
    w.begin_take(species="print", subject_id="S012", consent=True, notes="A4 glossy")
    for frames in ...: w.write(frames)
    w.end_take()
    w.close()                     # or use `with SessionWriter(...) as w:`

Labels (the rules of edge_fas.labels, shared with `record` and `collect`): `species` is "bona_fide"
or an attack species (print, replay, rigid_mask, ...; "attack" when only label=1 is given); `label`
is 0 (bona fide) or 1 (attack) and is derived from species when omitted. With require_consent (every
source but the synthetic rig) each take needs consent=True; a subject id must be a pseudonym.

Confinement: a reader only opens files inside the session folder. A take id or a frame's file path
in session.yaml / frames.jsonl that points elsewhere (absolute, '..', a symlink out) is refused.

Reading:

    r = SessionReader("field/site1_day3")
    r.metadata            # session.yaml as a dict;  r.device (DeviceInfo), r.calibration (RigCalibration)
    r.takes               # list of TakeInfo (id, label, species, subject_id, consent, notes, frames, complete)
    for frames in r:      # every FrameSet of every take, in order
        frames.truth      # GroundTruth(label, species, domain, face_box?, extra={take, subject_id})
    r.frames(take="0002") # one take only;  len(r) = number of whole frames
    r.index()             # [(take_id, frame_index), ...] of every whole frame, for random access:
    r.load("0002", 17)    # one FrameSet (a torch Dataset wraps index() + load())
    r.frames(corrupt_ok=True)  # a frame that cannot be read comes as a FrameSet without images and
                               # meta["corrupt"] saying why (replay judges it `unknown`), not an exception
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from edge_fas.calibration.rig import RigCalibration
from edge_fas.errors import CalibrationError, RecordingError
from edge_fas.labels import BONA_FIDE, SUBJECT_ID, consent_problem, species_problem
from edge_fas.types import DeviceInfo, FrameSet, GroundTruth

__all__ = ["SessionWriter", "SessionReader", "TakeInfo", "is_session", "recalibrate", "FORMAT", "VERSION"]

FORMAT = "edge-fas-session"
VERSION = 1
GENERIC_ATTACK = "attack"  # the species of a take given only label=1
_TAKE_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # a folder name under takes/, never a path


def is_session(path: str | Path) -> bool:
    return (Path(path) / "session.yaml").is_file()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(value):
    """Frame meta as JSON: numpy scalars become numbers, anything else exotic becomes its repr."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


@dataclass
class TakeInfo:
    id: str
    label: int
    species: str
    subject_id: str = ""
    consent: bool = False
    notes: str = ""
    started: str = ""
    ended: str | None = None
    frames: int = 0
    complete: bool = False
    extra: dict = field(default_factory=dict)


def _resolve_label(label, species) -> tuple[int, str]:
    if species is None and label is None:
        raise RecordingError("begin_take: give species ('bona_fide' or an attack species such as 'print') "
                             "or label (0 = bona fide, 1 = attack)")
    if species is not None and (not isinstance(species, str) or not species.strip()):
        raise RecordingError(f"begin_take: species {species!r} must be a non-empty name such as 'bona_fide' or 'print'")
    if label is not None and label not in (0, 1):
        raise RecordingError(f"begin_take: label {label!r} must be 0 (bona fide) or 1 (attack)")
    if species is None:
        species = BONA_FIDE if label == 0 else GENERIC_ATTACK
    elif species_problem(species):
        raise RecordingError(f"begin_take: {species_problem(species)}")
    derived = 0 if species == BONA_FIDE else 1
    if label is not None and int(label) != derived:
        raise RecordingError(f"begin_take: label {label} contradicts species {species!r} "
                             f"(bona_fide is 0, every attack species is 1)")
    return derived, species


class SessionWriter:
    """Writes one session folder; see the module docstring. Not thread-safe: one writer thread."""

    def __init__(self, path: str | Path, device: DeviceInfo | None = None,
                 calibration: RigCalibration | None = None, site: str = "", domain: str = "",
                 operator: str = "", notes: str = "", retention_days: int | None = None,
                 color_codec: str | None = None, jpeg_quality: int = 95, png_level: int = 1,
                 require_consent: bool = True, extra: dict | None = None, append: bool = False):
        self.path = Path(path)
        if color_codec not in (None, "png", "jpeg"):
            raise RecordingError(f"session {self.path}: color_codec {color_codec!r}; expected png (lossless) or jpeg")
        if retention_days is not None and retention_days <= 0:
            raise RecordingError(f"session {self.path}: retention_days={retention_days} must be positive (or None)")
        self.device = device or DeviceInfo()
        self.calibration = calibration
        self.jpeg_quality, self.png_level = int(jpeg_quality), int(png_level)
        self.require_consent = require_consent
        self.takes: list[TakeInfo] = []
        self._take: TakeInfo | None = None
        self._lines = None
        self._index = 0
        self._closed = False
        self._lock: Path | None = None
        given = {"site": site, "domain": domain, "operator": operator, "notes": notes,
                 "retention_days": retention_days, "color_codec": color_codec}
        try:
            if append and is_session(self.path):
                self._lock = _take_lock(self.path)
                self._reopen(given, extra or {})
            else:
                self._create(given, extra or {}, append)
            self.color_codec = self.meta["color_codec"]
            self._save_yaml()
        except BaseException:
            self._release_lock()  # a refused or failed writer leaves the folder to the next one
            raise

    def _create(self, given: dict, extra: dict, append: bool) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            if append:
                raise RecordingError(f"cannot append to {self.path}: the folder is not empty and holds no edge-fas "
                                     "session (no session.yaml); give a session folder or a new one")
            raise RecordingError(f"session folder {self.path} already exists and is not empty; choose a new --out "
                                 "path (sessions are never overwritten), or append takes to it (--append)")
        try:
            (self.path / "takes").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RecordingError(f"cannot create session folder {self.path}: {e}") from e
        self._lock = _take_lock(self.path)
        self.meta = {"format": FORMAT, "version": VERSION, "created": _now(), **given,
                     "color_codec": given["color_codec"] or "png", **extra}

    def _reopen(self, given: dict, extra: dict) -> None:
        """More takes for an existing session: only from the camera, calibration and labels it was recorded with,
        since every reader registers all of a session's takes with its one calibration and counts them in its one
        domain. Its takes, interrupted ones included, stay as they are; new takes are numbered after them."""
        reader = SessionReader(self.path)
        where = f"session {self.path}"
        problems = []
        if reader.metadata.get("device") and reader.device != self.device:
            problems.append(f"it was recorded with {_device_text(reader.device)}, this camera is "
                            f"{_device_text(self.device)}")
        stored = reader.calibration.to_dict() if reader.calibration is not None else None
        mine = self.calibration.to_dict() if self.calibration is not None else None
        if stored != mine:
            problems.append("its calibration differs from this camera's "
                            f"({_calibration_difference(stored, mine)}); if this camera's is the right one, "
                            f"`edge-fas calibrate --apply {self.path} --calibration-file FILE` first re-registers the "
                            "session with it")
        for key, value in given.items():
            if value not in (None, "") and value != reader.metadata.get(key):  # an empty one too: it names every take
                problems.append(f"its {key} is {reader.metadata.get(key)!r}, not {value!r}")
        if problems:
            raise RecordingError(f"{where}: cannot append: " + "; ".join(problems) +
                                 ". Record into a new --out folder instead")
        doc = dict(reader.metadata)
        for key in ("device", "calibration", "takes", "closed"):
            doc.pop(key, None)
        for key, value in extra.items():
            doc.setdefault(key, value)  # what the session says stays
        doc["color_codec"] = doc.get("color_codec") or "png"
        doc["reopened"] = [*(doc.get("reopened") or []), _now()]
        self.meta = doc
        self.takes = list(reader.takes)

    # -- takes -------------------------------------------------------------------------------------
    def begin_take(self, species: str | None = None, subject_id: str = "", consent: bool = False,
                   notes: str = "", label: int | None = None, **extra) -> TakeInfo:
        self._check_open()
        if self._take is not None:
            self.end_take()
        label, species = _resolve_label(label, species)
        subject_id = str(subject_id or "")
        if subject_id and not SUBJECT_ID.match(subject_id):
            raise RecordingError(f"begin_take: subject_id {subject_id!r} must be a pseudonymous code "
                                 "(2-32 letters, digits, '-' or '_'; no names or e-mail addresses)")
        problem = consent_problem(consent, synthetic=not self.require_consent)
        if problem:
            raise RecordingError(f"begin_take: {problem} (consent=True; require_consent=False for synthetic data)")
        number = len(self.takes) + 1
        while (self.path / "takes" / f"{number:04d}").exists():  # a take folder session.yaml does not list
            number += 1
        take = TakeInfo(id=f"{number:04d}", label=label, species=species, subject_id=subject_id,
                        consent=bool(consent), notes=notes, started=_now(), extra=_jsonable(extra))
        self.takes.append(take)
        self._save_yaml()  # listed before any frame exists, so a crash from here on leaves a readable take
        folder = self.path / "takes" / take.id
        for sub in ("rgb", "depth", "ir"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self._lines = open(folder / "frames.jsonl", "a", encoding="utf-8")
        self._take, self._index = take, 0
        return take

    def write(self, frames: FrameSet) -> None:
        """Append one frame set to the current take (images first, then its line: crash-safe)."""
        self._check_open()
        if self._take is None:
            raise RecordingError("SessionWriter.write: no take is open; call begin_take(species=..., ...) first")
        folder = self.path / "takes" / self._take.id
        name = f"{self._index:06d}"
        files = {}
        for m in ("rgb", "depth", "ir"):
            img = getattr(frames, m)
            if img is None:
                continue
            files[m] = self._write_image(folder, m, name, img)
        line = {"index": self._index, "timestamps": _jsonable(frames.timestamps),
                "counters": _jsonable(frames.counters), "depth_scale": float(frames.depth_scale),
                "registered": bool(frames.registered), "files": files, "meta": _jsonable(frames.meta)}
        if frames.truth is not None:
            line["truth"] = _jsonable(frames.truth.to_dict())
        self._lines.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._lines.flush()
        self._index += 1
        self._take.frames = self._index

    def _write_image(self, folder: Path, modality: str, name: str, img: np.ndarray) -> str:
        if modality == "rgb":
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise RecordingError(f"session write: rgb must be H x W x 3 uint8, got {img.dtype} {img.shape}")
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            if self.color_codec == "jpeg":
                rel = f"{modality}/{name}.jpg"
                ok = cv2.imwrite(str(folder / rel), img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                return self._check(ok, folder / rel, rel)
        elif img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
            raise RecordingError(f"session write: {modality} must be H x W uint8 or uint16, got {img.dtype} {img.shape}")
        rel = f"{modality}/{name}.png"
        ok = cv2.imwrite(str(folder / rel), np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, self.png_level])
        return self._check(ok, folder / rel, rel)

    @staticmethod
    def _check(ok: bool, path: Path, rel: str) -> str:
        if not ok:
            raise RecordingError(f"could not write {path} (disk full or not writable?)")
        return rel

    def end_take(self) -> TakeInfo | None:
        take = self._take
        if take is None:
            return None
        self._lines.close()
        self._lines, self._take = None, None
        take.ended, take.complete = _now(), True
        self._save_yaml()
        return take

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.end_take()
            self.meta["closed"] = _now()
            self._save_yaml()
        finally:
            self._closed = True
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def __enter__(self) -> "SessionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self):
        if self._closed:
            raise RecordingError(f"session {self.path} is closed")

    def _save_yaml(self) -> None:
        doc = dict(self.meta)
        doc["device"] = self.device.to_dict()
        doc["calibration"] = self.calibration.to_dict() if self.calibration is not None else None
        doc["takes"] = [asdict(t) for t in self.takes]
        _write_session_yaml(self.path, doc)


LOCK = ".writer.lock"  # present while a SessionWriter has the folder open


def _take_lock(path: Path) -> Path:
    """The session's writer lock (one writer at a time: two would number their takes alike). A lock left by a
    process of this machine that no longer runs (a crash, a pulled plug) is taken over."""
    import socket

    lock = path / LOCK
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid")):
                lock.unlink(missing_ok=True)  # its writer is gone
                continue
            raise RecordingError(f"session {path} is being written by another process ({holder or 'unreadable lock'}"
                                 f"); wait for it to finish, or, if no edge-fas process writes there any more, "
                                 f"delete {lock}") from None
        except OSError as e:
            raise RecordingError(f"cannot lock session folder {path}: {e}") from e
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return lock
    raise RecordingError(f"session {path}: could not take the writer lock {lock}; try again")


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _device_text(device: DeviceInfo) -> str:
    serial = f" serial {device.serial}" if device.serial else ""
    firmware = f" firmware {device.firmware}" if device.firmware else ""
    return f"{device.model}{serial}{firmware} ({device.driver or 'unknown driver'})"


def _calibration_difference(stored: dict | None, mine: dict | None) -> str:
    if stored is None or mine is None:
        return "the session has " + ("none" if stored is None else "one") + ", this camera " + \
            ("none" if mine is None else "one")
    keys = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
    return "differs in " + ", ".join(keys)


def _write_session_yaml(path: Path, doc: dict) -> None:
    """session.yaml replaced atomically: a crash leaves the old file or the new one, never half of one."""
    tmp = path / "session.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path / "session.yaml")


def recalibrate(path: str | Path, calibration: RigCalibration, origin: str) -> str:
    """Put `calibration` (measured after the session was recorded, from the file `origin`) into the session at
    `path`, so replay, eval and training register its raw frames with it. The calibration it replaces is kept
    in session.yaml's `calibration_history` with the time and the file; no frame is touched. The recorded depth
    unit stays. Refused for a session of another camera (when the calibration names one) and for takes whose
    depth the camera already registered in hardware. Returns what was done, for the person running it."""
    path = Path(path)
    SessionReader(path)  # a folder that is no session is refused as such, before any lock is made in it
    lock = _take_lock(path)  # not while a writer has the session open: its next take would write the old one back
    try:
        return _recalibrate(path, calibration, origin)
    finally:
        lock.unlink(missing_ok=True)


def _recalibrate(path: Path, calibration: RigCalibration, origin: str) -> str:
    reader = SessionReader(path)
    problem = calibration.camera_problem(reader.device)
    if problem:
        raise RecordingError(f"session {path}: the calibration {origin} belongs to another camera: {problem}; "
                             "apply the calibration of the camera that recorded this session")
    lines = {t.id: reader.frame_lines(t.id) for t in reader.takes}  # each take's frames.jsonl, read once
    registered = [take for take, ls in lines.items() if any(line.get("registered") for line in ls)]
    if registered:
        raise RecordingError(f"session {path}: take(s) {', '.join(registered)} hold depth the camera registered to "
                             "colour itself, so no rig calibration can apply to them; nothing was changed")
    first = next((ls[0] for ls in lines.values() if ls), {})
    recorded_unit = reader.calibration.depth_scale if reader.calibration is not None else first.get("depth_scale")
    new = replace(calibration, depth_scale=float(recorded_unit or calibration.depth_scale)).to_dict()
    doc = dict(reader.metadata)
    if doc.get("calibration") == new:
        return f"session {path}: already carries the calibration of {origin}; nothing changed"
    doc["calibration_history"] = [*(doc.get("calibration_history") or []),
                                  {"replaced": _now(), "by": str(origin), "calibration": doc.get("calibration")}]
    doc["calibration"] = new
    _write_session_yaml(path, doc)
    takes = len(reader.takes)
    return (f"session {path}: now registers with the calibration of {origin} ({len(reader)} frames, {takes} "
            f"take{'s' * (takes != 1)}); the one it replaced is kept in session.yaml's calibration_history")


class SessionReader:
    """Reads a session folder (see the module docstring); iterating yields FrameSets with truth."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        yml = self.path / "session.yaml"
        if not yml.is_file():
            raise RecordingError(f"{self.path} is not an edge-fas session (no session.yaml); record one with "
                                 "`edge-fas record --format session --out PATH`")
        try:
            doc = yaml.safe_load(yml.read_text())
        except yaml.YAMLError as e:
            raise RecordingError(f"{yml} is not valid YAML: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RecordingError(f"{yml} is not an edge-fas session file (format {doc.get('format') if isinstance(doc, dict) else None!r})")
        if doc.get("version") != VERSION:
            raise RecordingError(f"{yml}: session format version {doc.get('version')!r} is not supported (expected {VERSION})")
        self.metadata = doc
        self.device = DeviceInfo(**{k: str(v) for k, v in (doc.get("device") or {}).items()
                                    if k in ("model", "serial", "firmware", "driver")})
        try:
            self.calibration = (RigCalibration.from_dict(doc["calibration"], where=f"{yml}:calibration")
                                if doc.get("calibration") else None)
        except CalibrationError as e:
            raise RecordingError(str(e)) from e
        self.takes: list[TakeInfo] = []
        self._cache: dict[str, list[dict]] = {}
        self._root = self.path.resolve()
        for t in doc.get("takes") or []:
            info = TakeInfo(**{k: v for k, v in t.items() if k in TakeInfo.__dataclass_fields__})
            info.id = str(info.id)
            if not _TAKE_ID.match(info.id) or not self._inside(self.path / "takes" / info.id):
                raise RecordingError(f"{yml}: take id {info.id!r} is not a plain folder name inside the session "
                                     "(letters, digits, '-', '_'); the session file was edited or damaged")
            info.frames = len(self._lines(info.id))  # the truth on disk, also for an interrupted take
            self.takes.append(info)

    @property
    def domain(self) -> str:
        return str(self.metadata.get("domain") or "")

    def index(self) -> list[tuple[str, int]]:
        """(take id, frame index) of every whole frame, in recording order."""
        return [(t.id, i) for t in self.takes for i in range(t.frames)]

    def load(self, take_id: str, index: int) -> FrameSet:
        """One frame set by take id and frame index (random access)."""
        info = next((t for t in self.takes if t.id == take_id), None)
        if info is None:
            raise RecordingError(f"session {self.path} has no take {take_id!r}; takes: {[t.id for t in self.takes]}")
        if not 0 <= index < info.frames:
            raise RecordingError(f"session {self.path} take {take_id} has {info.frames} whole frames; no frame {index}")
        if take_id not in self._cache:
            self._cache = {take_id: self._lines(take_id)}  # one take's lines at a time
        return self._frame(info, self._cache[take_id][index])

    def frame_lines(self, take_id: str) -> list[dict]:
        """The whole frames.jsonl lines of one take (timestamps, counters, files, meta), images not read."""
        return self._lines(take_id)

    def image_path(self, take_id: str, rel) -> Path | None:
        """Where a frame line's file entry points, or None when that is outside the session folder."""
        path = self.path / "takes" / take_id / str(rel)
        return path if self._inside(path) else None

    def _lines(self, take_id: str) -> list[dict]:
        path = self.path / "takes" / take_id / "frames.jsonl"
        if not path.is_file():
            return []
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a frame whose line was cut by a crash: not whole
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return out

    def __len__(self) -> int:
        return sum(t.frames for t in self.takes)

    def __iter__(self) -> Iterator[FrameSet]:
        return self.frames()

    def frames(self, take: str | None = None, corrupt_ok: bool = False) -> Iterator[FrameSet]:
        """Every frame set (of one take); corrupt_ok: see the module docstring."""
        takes = self.takes if take is None else [t for t in self.takes if t.id == take]
        if take is not None and not takes:
            raise RecordingError(f"session {self.path} has no take {take!r}; takes: {[t.id for t in self.takes]}")
        for info in takes:
            for line in self._lines(info.id):
                yield self._frame(info, line, corrupt_ok)

    def _inside(self, path: Path) -> bool:
        """Is `path` (symlinks followed) inside the session folder?"""
        try:
            return path.resolve().is_relative_to(self._root)
        except (OSError, RuntimeError):  # a symlink loop
            return False

    def _frame(self, info: TakeInfo, line: dict, corrupt_ok: bool = False) -> FrameSet:
        folder = self.path / "takes" / info.id
        images, problem = {}, None
        files = line.get("files", {})
        for m, rel in (files.items() if isinstance(files, dict) else ()):
            path = folder / str(rel)
            if m not in ("rgb", "depth", "ir") or not self._inside(path):
                problem = (f"session {self.path}: frame {line.get('index')} of take {info.id} names {m}: {rel!r}, "
                           "which is not an image inside the session folder")
                break
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                problem = f"session {self.path}: frame image {path} is missing or unreadable"
                break
            images[m] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if m == "rgb" else img
        if problem is not None:
            if not corrupt_ok:
                raise RecordingError(problem)
            images = {}
        t = line.get("truth") or {}
        box = t.get("face_box")
        extra = {k: v for k, v in t.items() if k not in ("label", "species", "domain", "face_box", "distance_m")}
        extra.update({"take": info.id, "subject_id": info.subject_id, "consent": bool(info.consent)})
        truth = GroundTruth(label=int(info.label), species=info.species, domain=self.domain or t.get("domain", ""),
                            face_box=tuple(box) if box else None, distance_m=t.get("distance_m"), extra=extra)
        meta = dict(line.get("meta") or {})
        meta.update({"take": info.id, "index": line.get("index"), "source": str(self.path)})
        if problem is not None:
            meta["corrupt"] = problem
        try:
            timestamps = {k: float(v) for k, v in (line.get("timestamps") or {}).items()}
            counters = {k: int(v) for k, v in (line.get("counters") or {}).items()}
            depth_scale = float(line.get("depth_scale", 0.001))
        except (TypeError, ValueError, AttributeError) as e:
            if not corrupt_ok:
                raise RecordingError(f"session {self.path}: frame {line.get('index')} of take {info.id} has "
                                     f"malformed timestamps or counters ({e})") from None
            timestamps, counters, depth_scale, images = {}, {}, 0.001, {}
            meta["corrupt"] = meta.get("corrupt") or f"frame {line.get('index')} of take {info.id}: malformed line ({e})"
        return FrameSet(rgb=images.get("rgb"), depth=images.get("depth"), ir=images.get("ir"),
                        depth_scale=depth_scale, timestamps=timestamps, counters=counters,
                        registered=bool(line.get("registered", False)), device=self.device,
                        calibration=self.calibration, truth=truth, meta=meta)
