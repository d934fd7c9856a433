"""Dataset readers index samples as Records; `load(record)` decodes one into a FaceCrop.

A reader (casia_surf, cefa, wmca, padisi) turns a list or partition file into Records without decoding
anything: the file(s) to read, our label (1 = attack), the PAI species, the dataset, the path as the
list names it, and "file:line" for error messages. `load` decodes a Record lazily (the reader module
named by its `kind` decodes it into a SourceCrop, the face region at its source resolution, and
edge_fas.data.source.finish resizes and normalises it like every other source), so a DataLoader
worker or the crop cache (edge_fas.data.stream, edge_fas.data.cache) sits between the index and the
pixels. `load_crops` decodes a whole list into an in-memory CropSet (small sets, tests, tools).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.errors import EdgeFasError

__all__ = ["DatasetError", "Record", "source", "load", "load_crops", "frame_index", "LOADERS"]


class DatasetError(EdgeFasError, ValueError):
    """A dataset file is missing or malformed; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class Record:
    kind: str                    # which loader decodes it (LOADERS)
    files: tuple[str, ...]       # the file(s) to read
    label: int                   # ours: 1 = attack, 0 = bona fide
    species: str                 # PAI species (edge_fas.data.species), "bona_fide" for bona fide
    dataset: str                 # cefa | surf | wmca | padisi
    listed: str                  # the sample as its list names it (scores.csv)
    where: str                   # "list file:line" (or "partition file:line")
    frame: tuple[int, int] | None = None  # (k, n): the k-th of n evenly spaced frames of a video file

    def identity(self) -> dict:
        """What the decoded pixels depend on (the crop cache's key): kind, frame and every file with its
        size and modification time, so a replaced file is decoded again."""
        files = []
        for f in self.files:
            try:
                st = os.stat(f)
            except FileNotFoundError:
                raise DatasetError(f"{self.where}: {f} does not exist (any more); check the data root") from None
            files.append([f, st.st_size, st.st_mtime_ns])
        return {"kind": self.kind, "files": files, "frame": None if self.frame is None else list(self.frame)}

    def needs_detector(self, detect: bool = False) -> bool:
        """Whether decoding runs the face detector: full frames always, released crops with data.detect."""
        return bool(detect) or self.kind in DETECTING_KINDS

    def source(self, params, detector=None):
        return source(self, params, detector)


# kind -> "module:function(record, params, detector) -> SourceCrop | None" (None: no face found)
LOADERS = {
    "images": "edge_fas.data.images:source",
    "padisi_npz": "edge_fas.data.padisi:source",
    "wmca_preprocessed": "edge_fas.data.wmca:source_preprocessed",
    "wmca_raw": "edge_fas.data.wmca:source_raw",
}
DETECTING_KINDS = ("wmca_raw",)  # full frames: the face is always detected


def frame_index(k: int, n: int, count: int) -> int:
    """The k-th of n evenly spaced frames in a video of `count` frames (first and last included)."""
    if count <= 0:
        raise ValueError("frame_index: the video has no frames")
    if n <= 1:
        return 0
    return int(round(np.linspace(0, count - 1, min(n, count))[min(k, min(n, count) - 1)]))


def source(record: Record, params, detector=None):
    """Decode one record into its SourceCrop (None: no face found). `detector`: a FaceDetector to
    re-detect the face in releases that ship crops (None: use the release's crop), and the detector
    full frames need."""
    try:
        module, func = LOADERS[record.kind].split(":")
    except KeyError:
        raise DatasetError(f"{record.where}: unknown record kind {record.kind!r}") from None
    return getattr(importlib.import_module(module), func)(record, params, detector)


def load(record: Record, params, detector=None):
    """Decode and crop one record into a FaceCrop (None: no face found)."""
    from edge_fas.data.source import finish

    src = source(record, params, detector)
    return None if src is None else finish(src, params)


def load_crops(records: list[Record], params, meta: dict | None = None, detect: bool = False,
               progress=None) -> CropSet:
    """Decode every record into one in-memory CropSet. detect: re-detect faces on releases that ship
    face crops (full-frame sources always detect). Records with no face are skipped and counted."""
    if not records:
        raise DatasetError("no samples to load: the protocol's lists selected nothing")
    detector = None
    needs_detector = detect or any(r.kind in DETECTING_KINDS for r in records)
    crops, keep, skipped = [], [], 0
    try:
        if needs_detector:
            from edge_fas.face import FaceDetector

            detector = FaceDetector()
        for i, r in enumerate(records):
            crop = load(r, params, detector if (detect or r.kind in DETECTING_KINDS) else None)
            if crop is None:
                skipped += 1
            else:
                crops.append(crop)
                keep.append(r)
            if progress:
                progress(i + 1, len(records))
    finally:
        if detector is not None:
            detector.close()
    if not crops:
        raise DatasetError(f"none of the {len(records)} samples gave a face crop (first: {records[0].where})")
    cs = CropSet.from_crops(crops, [r.label for r in keep], [r.species for r in keep], [r.dataset for r in keep],
                            meta={**(meta or {}), "skipped_no_face": skipped}, paths=[r.listed for r in keep])
    return cs
