"""Where compiled engines live, and why a cached engine may be trusted.

A TensorRT engine (and an ORT TensorRT-provider engine) is executable code for the GPU: a planted or
corrupted one runs with the service's rights. So an engine is kept in a per-user cache, never the
artifact folder, and every load checks, before a single byte goes to the deserialiser:

- the cache folders and files belong to this user and cannot be written by anybody else
  (no group/other write bit, not a symlink);
- the engine's sha256 and size equal those recorded in its ``record.json`` when it was built, and
  the record's key fields (ONNX hash, TensorRT version, GPU, build options, recipe, precision,
  calibration digest) equal those asked for now.

Anything that fails is moved to ``quarantine/`` with the reason and the engine is rebuilt: a corrupt
engine never makes every start of an unattended kiosk fail. Writes take a lock (two processes never
build into one folder at once) and go through a unique temporary file that is fsynced and renamed
into place, so a power cut leaves the old engine or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import time
from pathlib import Path

from edge_fas.errors import EdgeFasError

RECORD = "record.json"


def cache_root() -> Path:
    """EDGE_FAS_CACHE, else $XDG_CACHE_HOME/edge-fas, else ~/.cache/edge-fas."""
    if os.environ.get("EDGE_FAS_CACHE"):
        return Path(os.environ["EDGE_FAS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edge-fas"


class UntrustedCache(EdgeFasError):
    """A cache folder or file that another user could have written."""


def check_private(path: Path, what: str) -> None:
    """Refuse `path` unless it is ours, no symlink, and not writable by group or others."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedCache(f"{what} {path} is a symbolic link; engine caches must be plain folders and files "
                             "(remove the link, or set EDGE_FAS_CACHE to a folder of your own)")
    if st.st_uid != os.geteuid():
        raise UntrustedCache(f"{what} {path} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}); "
                             "an engine is code and is only loaded from a cache this user owns: build it as the "
                             "user that runs edge-fas, or set EDGE_FAS_CACHE to a folder of that user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedCache(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                             f"run `chmod go-w {path}` or remove it and let edge-fas rebuild it")


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents below the cache root) mode 0700 and check it is ours."""
    root = cache_root()
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # check every folder from the root down: a writable parent lets someone swap the child
    parts = [path] + [p for p in path.parents if p == root or root in p.parents]
    for p in reversed(parts):
        check_private(p, "engine cache folder")
    return path


def engine_cache_dir(key: str, flavour: str) -> Path:
    """The private folder of one engine key (e.g. flavour 'tensorrt' or 'ort-trt')."""
    if not key or "/" in key or key.startswith("."):
        raise EdgeFasError(f"engine cache key {key!r} is not a plain name")
    return private_dir(cache_root() / "engines" / flavour / key)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(obj) -> str:
    """A short stable digest of JSON-able build facts (options, calibration set, ...)."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())[:16]


@contextlib.contextmanager
def locked(folder: Path, timeout_s: float = 3600.0):
    """Hold an exclusive lock on folder/.lock (two builds of one engine never interleave)."""
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise EdgeFasError(f"could not lock {path} within {timeout_s:.0f} s: another edge-fas process "
                                       "is building this engine; wait for it or stop it") from e
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a unique temp file in the same folder: fsync, rename, fsync folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def quarantine(folder: Path, reason: str) -> Path:
    """Move the files of an engine folder aside (never deleted: evidence) and note why."""
    dest = private_dir(cache_root() / "quarantine") / f"{folder.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    dest.mkdir(mode=0o700)
    for p in folder.iterdir():
        if p.name != ".lock":
            os.replace(p, dest / p.name)
    (dest / "REASON.txt").write_text(reason + "\n")
    return dest


class EngineStore:
    """One engine key's folder: `engine.plan` plus `record.json` (key fields, sha256, size, build facts)."""

    def __init__(self, key: str, flavour: str, plan_name: str = "engine.plan"):
        self.key = key
        self.folder = engine_cache_dir(key, flavour)
        self.plan = self.folder / plan_name
        self.record_path = self.folder / RECORD

    def load(self, expect: dict) -> tuple[bytes | None, str]:
        """(plan bytes, '') when a trusted engine for `expect` is cached; (None, why not) otherwise.

        A present but untrustworthy engine is quarantined (the reason says where)."""
        if not self.plan.exists() and not self.record_path.exists():
            return None, "no engine cached yet"
        try:
            check_private(self.plan, "engine")
            check_private(self.record_path, "engine record")
            if not self.record_path.is_file():
                raise ValueError("its record.json is missing (the engine was not written by edge-fas)")
            record = json.loads(self.record_path.read_text())
            if not self.plan.is_file():
                raise ValueError("the engine file is missing")
            wrong = {k: (record.get("key", {}).get(k), v) for k, v in expect.items()
                     if record.get("key", {}).get(k) != v}
            if wrong:
                raise ValueError("it was built for other settings: " + ", ".join(
                    f"{k} {a!r} (now {b!r})" for k, (a, b) in sorted(wrong.items())))
            data = self.plan.read_bytes()
            if len(data) != record.get("bytes") or sha256_bytes(data) != record.get("sha256"):
                raise ValueError(f"its sha256/size ({len(data)} bytes) differ from those recorded at build "
                                 f"({record.get('bytes')} bytes): truncated, corrupted or replaced")
        except UntrustedCache:
            raise  # not ours to move: say so and stop (the message names the fix)
        except (ValueError, OSError) as e:
            where = quarantine(self.folder, f"engine {self.plan} refused: {e}")
            return None, f"cached engine refused ({e}); moved to {where}, rebuilding"
        return data, ""

    def save(self, plan: bytes, expect: dict, facts: dict) -> dict:
        """Write engine then record (record last: an engine without its record is never loaded)."""
        record = {"key": expect, "sha256": sha256_bytes(plan), "bytes": len(plan),
                  "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **facts}
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()
        atomic_write(self.plan, plan)
        atomic_write(self.record_path, json.dumps(record, indent=1, sort_keys=True).encode())
        return record

    def record(self) -> dict:
        return json.loads(self.record_path.read_text())
