"""Dataset readers index samples as Records; `load(record)` decodes one into a FaceCrop.

A reader (casia_surf, cefa, wmca, padisi) turns a list or partition file into Records without decoding
anything: the file(s) to read, our label (1 = attack), the PAI species, the dataset, the path as the
list names it, and "file:line" for error messages. `load` decodes a Record lazily (the reader module
named by its `kind` does the work, through edge_fas.preprocess like every other source), so a
DataLoader worker or a crop cache can sit between the index and the pixels. `load_crops` builds the
in-memory CropSet the training loop uses today.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.errors import EdgeFasError

__all__ = ["DatasetError", "Record", "load", "load_crops", "frame_index", "LOADERS"]


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


# kind -> "module:function(record, params, detector) -> FaceCrop | None" (None: no face found)
LOADERS = {
    "images": "edge_fas.data.images:load",
    "padisi_npz": "edge_fas.data.padisi:load",
    "wmca_preprocessed": "edge_fas.data.wmca:load_preprocessed",
    "wmca_raw": "edge_fas.data.wmca:load_raw",
}


def frame_index(k: int, n: int, count: int) -> int:
    """The k-th of n evenly spaced frames in a video of `count` frames (first and last included)."""
    if count <= 0:
        raise ValueError("frame_index: the video has no frames")
    if n <= 1:
        return 0
    return int(round(np.linspace(0, count - 1, min(n, count))[min(k, min(n, count) - 1)]))


def load(record: Record, params, detector=None):
    """Decode and crop one record. `detector`: a FaceDetector to re-detect the face in releases that
    ship crops (None: use the release's crop), and the detector full frames need."""
    try:
        module, func = LOADERS[record.kind].split(":")
    except KeyError:
        raise DatasetError(f"{record.where}: unknown record kind {record.kind!r}") from None
    return getattr(importlib.import_module(module), func)(record, params, detector)


def load_crops(records: list[Record], params, meta: dict | None = None, detect: bool = False,
               progress=None) -> CropSet:
    """Decode every record into one in-memory CropSet. detect: re-detect faces on releases that ship
    face crops (full-frame sources always detect). Records with no face are skipped and counted."""
    if not records:
        raise DatasetError("no samples to load: the protocol's lists selected nothing")
    detector = None
    needs_detector = detect or any(r.kind == "wmca_raw" for r in records)
    crops, keep, skipped = [], [], 0
    try:
        if needs_detector:
            from edge_fas.face import FaceDetector

            detector = FaceDetector()
        for i, r in enumerate(records):
            crop = load(r, params, detector if (detect or r.kind == "wmca_raw") else None)
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
