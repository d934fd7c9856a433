"""The on-disk crop cache: each sample's decoded, detected and cut face region (a SourceCrop), stored
once and reused by every later epoch and run.

An entry's key is the SHA-256 of everything its pixels depend on: the sample's identity (the files it
reads with their sizes and modification times, or the synthetic rig's version and render parameters,
or the session take and frame), the crop parameters (model input size, crop scale, framing, context, the
whole-image size limit), the face detector's model hash and search version where a detector frames
the face, and CACHE_VERSION. Changing any of them gives new keys, so a stale crop is never reused; the
old entries are simply not read again (delete the folder to reclaim the space). The normalisation (mean/std,
depth and IR scaling, data.preprocess's depth_norm and ir_norm) is applied after the cache, so changing it
reuses every entry.

Entries are uncompressed .npz files (`KEY[:2]/KEY.npz` under the cache folder) holding the arrays and a
JSON header that repeats the key; they are written to a temporary name and renamed into place, so a
reader never sees half an entry, and concurrent writers (DataLoader workers, distributed ranks) of
the same entry are harmless. A missing, truncated or corrupt entry (numpy checks the zip CRC-32 of
every array), or one whose header does not repeat its key, reads as absent: the sample is decoded
again and the entry rewritten; it is never trained on. A sample with no face is cached as such.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from edge_fas.data.source import CONTEXT, MAX_SIDE_FACTOR, SourceCrop

__all__ = ["CACHE_VERSION", "NO_FACE", "CropCache", "crop_key"]

CACHE_VERSION = 1
NO_FACE = "no-face"  # what get() returns for a sample cached as having no face
log = logging.getLogger(__name__)


def crop_key(identity: dict, params, detector: bool) -> str:
    """The cache key of one sample under the preprocessing parameters `params`."""
    parts = {"v": CACHE_VERSION, "sample": identity, "size": int(params.size), "crop_scale": float(params.crop_scale),
             "context": CONTEXT, "max_side": MAX_SIDE_FACTOR}
    if params.framing != "detector":  # the detector's framing keeps the keys it had before framing was a parameter
        parts["framing"] = [params.framing, float(params.framing_face_m)]
    if detector:
        from edge_fas.face import FACE_MODEL_SHA256, SEARCH_VERSION

        parts["detector"] = [FACE_MODEL_SHA256, SEARCH_VERSION]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class CropCache:
    """A folder of cached SourceCrops. get(key) -> SourceCrop | NO_FACE | None (absent or unreadable);
    lookup(key) -> (status, value), status "hit", "absent" or "corrupt"; put(key, SourceCrop | None)."""

    def __init__(self, root):
        self.root = Path(root)
        self.corrupt = 0  # entries found unreadable by this process (each is rebuilt by its caller)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str):
        return self.lookup(key)[1]

    def lookup(self, key: str):
        p = self.path(key)
        try:
            with np.load(p, allow_pickle=False) as z:
                head = json.loads(str(z["header"]))
                if head.get("key") != key:
                    raise ValueError(f"the header names key {head.get('key')!r}")
                if not head["face"]:
                    return "hit", NO_FACE
                arrays = {m: (z[m] if m in z.files else None) for m in ("rgb", "depth", "ir")}
            box = tuple(head["box"]) if head["box"] is not None else None
            return "hit", SourceCrop(head["mode"], arrays["rgb"], arrays["depth"], arrays["ir"], box,
                                     float(head["depth_scale"]), tuple(head["origin"]))
        except FileNotFoundError:
            return "absent", None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            self.corrupt += 1
            log.warning("crop cache entry %s is unreadable (%s: %s); decoding the sample again", p, type(e).__name__, e)
            return "corrupt", None

    def put(self, key: str, src: SourceCrop | None) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        head = {"key": key, "face": src is not None}
        arrays = {}
        if src is not None:
            head.update(mode=src.mode, box=None if src.box is None else list(src.box), depth_scale=src.depth_scale,
                        origin=list(src.origin))
            arrays = {m: getattr(src, m) for m in ("rgb", "depth", "ir") if getattr(src, m) is not None}
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, header=np.array(json.dumps(head)), **arrays)
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_stale_temporaries(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files left by writers that were killed (older than `older_than_s`)."""
        n, now = 0, time.time()
        for t in self.root.glob("*/.*.tmp"):
            try:
                if now - t.stat().st_mtime > older_than_s:
                    t.unlink()
                    n += 1
            except FileNotFoundError:
                pass
        return n
