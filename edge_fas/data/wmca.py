"""WMCA (Idiap, bob.db.batl face-station): image export, preprocessed HDF5 pairs, raw videos, and the
grandtest / leave-one-out partitions.

Layouts followed:
- file names `<client>_<session>_<presenter>_<type>_<pai>` (bob.db.batl); type 0 is bona fide and
  (type, pai) names the PAI species (edge_fas.data.species.WMCA_PAI, from bob.pad.face's BATL map);
- the MMDG image export used by the MMDG-Benchmark W lists and the FlexModal WMCA lists
  (github.com/OMGGGGG/mmdg): `WMCA-Image/R_CDIT/<name>/{color,depth,ir}/<n>.jpg`, label 1 = bona fide;
- Idiap's preprocessed release (IDIAP_WMCA/README.txt in github.com/liuajian/CASIA-FAS-Dataset):
  `preprocessed-face-station_RGB/` (colour) and `preprocessed-face-station_CDIT/` (grey, depth,
  infrared, thermal), one HDF5 file per video in each, found under DATA_ROOT/WMCA as
  `<tree>/<filepath>.hdf5` (`.h5` and the filepath without its leading `face-station/` also tried).
  Frames are read as bob wrote them: groups `Frame_<n>/array` (bob.bio.video FrameContainer) or one
  dataset `data` of shape (frames, channels, H, W) (bob.bio.video VideoLikeContainer, as the
  IJCB 2021 ViT-PAD package reads it); channels first, 8-bit (floats in 0-1 are scaled). These are
  face crops, used as crops;
- raw per-video files `DATA_ROOT/WMCA/<filepath>.h5`: full frames stored as `Frame_<n>/array`, channels
  first: colour (3, RGB), depth (uint16 millimetres), infrared, optionally thermal, registered to the
  colour camera (what bob.db.batl's load returns with warp_to_reference). This layout is the one the
  issue describes; no real raw file was available to check it. Faces are found with the live
  pipeline's detector and cropped with edge_fas.preprocess.crop_face, as live;
- the partition files (bob.pad.face's BATL database, grandtest = bob.db.batl's "nowig" protocol, and the
  CSV exports of it: wmca-protocols-csv/ in the IJCB 2021 ViT-PAD package, IDIAP_WMCA/WMCA_Grandtest.txt
  in the CASIA-FAS-Dataset re-issue): CSV columns `client_id, filepath, group, label`, group
  train/dev/eval, label `bonafide` or `attack[/<2D|3D>/<pai>]`;
- the leave-one-out protocols as bob.pad.face's BatlPadDatabase derived them from grandtest
  (unseen_attack_list_maker): train and dev drop the held-out PAI, eval keeps only it and bona fide.
  Makeup (type 5) is left out of every split, as bob's default exclude_attacks_list does.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_fas.data.images import aligned_source, depth8_to_mm, triplet_records
from edge_fas.data.lists import ListLine
from edge_fas.data.records import DatasetError, Record, frame_index
from edge_fas.data.species import BONA_FIDE, WMCA_LABEL_NAMES, wmca_species

__all__ = ["DATASET", "LOO", "path_species", "records", "PartitionRow", "read_partition", "select",
           "video_records", "source_preprocessed", "source_raw"]

DATASET = "wmca"
NAME = re.compile(r"^(\d{3})_(\d{2})_(\d{3})_(\d)_(\d{2,3})$")
# bob.pad.face's LOO protocol names -> the held-out species
LOO = {"fakehead": "fake_head", "flexiblemask": "flexible_mask", "glasses": "glasses", "papermask": "paper_mask",
       "prints": "print", "replay": "replay", "rigidmask": "rigid_mask"}
GROUPS = {"train": "train", "dev": "val", "validation": "val", "eval": "test", "test": "test"}
PREPROCESSED = ("preprocessed-face-station_RGB", "preprocessed-face-station_CDIT")


def name_species(name: str) -> str | None:
    """Species named by a WMCA file name (bona_fide for type 0, "attack" for an unmapped PAI), or None."""
    m = NAME.match(name)
    if not m:
        return None
    t, p = int(m.group(4)), int(m.group(5))
    return wmca_species(t, p) or (BONA_FIDE if t == 0 else "attack")


def path_species(listed: str) -> str | None:
    for part in reversed(Path(listed).parts):
        sp = name_species(part)
        if sp is not None:
            return sp
    return None


def records(line: ListLine, polarity: str, root: Path, frames_per_video: int = 3) -> list[Record]:
    """Records of a WMCA-Image list line (MMDG / FlexModal lists)."""
    return triplet_records(line, polarity, lambda p: root / p, DATASET, path_species, frames_per_video)


# ---- partitions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PartitionRow:
    filepath: str   # face-station/<date>/<name>
    split: str      # train | val | test
    label: int      # ours: 1 = attack
    species: str
    where: str


def read_partition(path) -> list[PartitionRow]:
    """A WMCA partition CSV (client_id, filepath, group, label). Labels are words, so their polarity
    is unambiguous; a label that contradicts the file name stops with the line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"WMCA partition file {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"filepath", "group", "label"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}:1: header lacks column(s) {sorted(missing)}; a WMCA partition CSV has "
                               "columns client_id,filepath,group,label (bob.pad.face / bob.db.batl grandtest export)")
        rows = []
        for n, row in enumerate(reader, 2):
            where = f"{path}:{n}"
            group = (row["group"] or "").strip()
            if group not in GROUPS:
                raise DatasetError(f"{where}: group {group!r} is not one of {', '.join(GROUPS)}; fix the line")
            text = (row["label"] or "").strip()
            if text == "bonafide":
                label, said = 0, BONA_FIDE
            elif text == "attack" or text.startswith("attack/"):
                label = 1
                tail = text.rsplit("/", 1)[-1]
                said = WMCA_LABEL_NAMES.get(tail) if text != "attack" else None
                if text != "attack" and said is None:
                    raise DatasetError(f"{where}: attack type {tail!r} is unknown; expected one of "
                                       f"{', '.join(sorted(WMCA_LABEL_NAMES))}")
            else:
                raise DatasetError(f"{where}: label {text!r} is neither 'bonafide' nor 'attack[/...]'; fix the line")
            filepath = (row["filepath"] or "").strip()
            named = name_species(Path(filepath).name)
            if named is None:
                raise DatasetError(f"{where}: file path {filepath!r} does not end in a WMCA name "
                                   "<client>_<session>_<presenter>_<type>_<pai>; fix the line")
            if (named == BONA_FIDE) != (label == 0) or (said not in (None, BONA_FIDE) and named != "attack"
                                                       and said != named):
                raise DatasetError(f"{where}: label {text!r} contradicts the file name {Path(filepath).name} "
                                   f"({named}); the partition file is not a WMCA export: check it")
            rows.append(PartitionRow(filepath, GROUPS[group], label, named if named != "attack" else (said or named),
                                     where))
    if not rows:
        raise DatasetError(f"WMCA partition file {path} has no rows")
    return rows


def select(rows: list[PartitionRow], split: str, loo: str | None = None) -> list[PartitionRow]:
    """The rows of one split (grandtest), or of its leave-one-out variant holding out species `loo`
    (train/val without it, test only it and bona fide). Makeup is left out."""
    out = [r for r in rows if r.split == split and r.species != "makeup"]
    if loo is None:
        return out
    if split == "test":
        return [r for r in out if r.species in (loo, BONA_FIDE)]
    return [r for r in out if r.species != loo]


def _find(root: Path, tree: str | None, filepath: str, where: str) -> str:
    rel = [filepath]
    if filepath.startswith("face-station/"):
        rel.append(filepath[len("face-station/"):])
    tried = []
    for r in rel:
        for ext in (".hdf5", ".h5"):
            p = (root / tree / r if tree else root / r).with_name(Path(r).name + ext)
            tried.append(p)
            if p.is_file():
                return str(p)
    raise DatasetError(f"{where}: no file for {filepath} (tried {', '.join(str(t) for t in tried[:2])} ...); "
                       "extract the WMCA release under DATA_ROOT/WMCA keeping its folder names")


def video_records(rows: list[PartitionRow], root: Path, data: str = "preprocessed",
                  frames_per_video: int = 3) -> list[Record]:
    """frames_per_video records per video, from the preprocessed pair or the raw file."""
    if data not in ("preprocessed", "raw"):
        raise DatasetError(f"data.wmca {data!r} is unknown; use preprocessed or raw")
    out = []
    for r in rows:
        if data == "preprocessed":
            files = tuple(_find(root, t, r.filepath, r.where) for t in PREPROCESSED)
        else:
            files = (_find(root, None, r.filepath, r.where),)
        kind = f"wmca_{data}"
        out += [Record(kind, files, r.label, r.species, DATASET, r.filepath, r.where, (k, frames_per_video))
                for k in range(frames_per_video)]
    return out


# ---- decoding ------------------------------------------------------------------------------------

def _frames(h, path: str, where: str):
    """The frame arrays of one bob video file: Frame_<n>/array groups or a (T, C, H, W) `data` dataset."""
    keys = sorted((k for k in h.keys() if k.startswith("Frame_") and k[6:].isdigit()), key=lambda k: int(k[6:]))
    if keys:
        return [h[k]["array"] for k in keys]
    if "data" in h and h["data"].ndim == 4:
        return list(h["data"])
    raise DatasetError(f"{where}: {path} holds neither Frame_<n>/array groups nor a (frames, channels, H, W) 'data' "
                       f"dataset (found {sorted(h.keys())[:5]}); is it a bob video file of the WMCA release?")


def _pick(frames, record: Record, path: str):
    k, n = record.frame or (0, 1)
    return np.asarray(frames[frame_index(k, n, len(frames))])


def _to_uint8(a: np.ndarray, path: str, where: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        hi = float(np.nanmax(a)) if a.size else 0.0
        if np.isnan(a).any() or a.min() < 0 or hi > 255:
            raise DatasetError(f"{where}: {path} holds values outside 0-255 ({a.min()}..{hi}); not a preprocessed frame")
        return np.round(a * (255.0 if hi <= 1.0 else 1.0)).astype(np.uint8)
    raise DatasetError(f"{where}: {path} frames are {a.dtype}; the preprocessed WMCA release stores 8-bit frames")


def source_preprocessed(record: Record, params, detector=None):
    import h5py

    rgb_path, cdit_path = record.files
    with h5py.File(rgb_path, "r") as h:
        rgb = _to_uint8(_pick(_frames(h, rgb_path, record.where), record, rgb_path), rgb_path, record.where)
    with h5py.File(cdit_path, "r") as h:
        cdit = _to_uint8(_pick(_frames(h, cdit_path, record.where), record, cdit_path), cdit_path, record.where)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise DatasetError(f"{record.where}: {rgb_path} frame shape {rgb.shape}, expected (3, H, W) colour")
    if cdit.ndim != 3 or cdit.shape[0] < 3:
        raise DatasetError(f"{record.where}: {cdit_path} frame shape {cdit.shape}, expected (4, H, W): grey, depth, "
                           "infrared, thermal")
    rgb = np.ascontiguousarray(rgb.transpose(1, 2, 0))
    depth, ir = cdit[1], cdit[2]
    if depth.shape != rgb.shape[:2]:
        import cv2

        depth = cv2.resize(depth, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        ir = cv2.resize(ir, rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
    return aligned_source(rgb, depth8_to_mm(depth), ir, params, detector)


def source_raw(record: Record, params, detector=None):
    """A full raw frame: the face is detected as live; None when no face is found."""
    import h5py

    from edge_fas.data.source import face_source
    from edge_fas.types import FrameSet

    (path,) = record.files
    with h5py.File(path, "r") as h:
        a = _pick(_frames(h, path, record.where), record, path)
    if a.ndim != 3 or a.shape[0] < 5:
        raise DatasetError(f"{record.where}: {path} frame shape {a.shape}, expected (>=5, H, W): colour (3), depth, "
                           "infrared[, thermal] registered to colour")
    if a[:3].max() > 255:
        raise DatasetError(f"{record.where}: {path} colour channels exceed 255 ({a.dtype}); expected 8-bit colour in "
                           "channels 0-2")
    rgb = np.ascontiguousarray(a[:3].transpose(1, 2, 0)).astype(np.uint8)
    depth = a[3].astype(np.uint16)
    ir = a[4] if a.dtype in (np.uint8, np.uint16) else a[4].astype(np.uint16)
    if detector is None:
        raise DatasetError(f"{record.where}: raw WMCA frames need the face detector")
    dets = detector.detect(rgb)
    if not dets:
        return None
    frames = FrameSet(rgb=rgb, depth=depth, ir=ir, depth_scale=0.001, registered=True)
    return face_source(frames, max(dets, key=lambda d: d.area).box, params)
