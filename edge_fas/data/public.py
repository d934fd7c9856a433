"""Loaders for the public multimodal PAD datasets, in the layouts their releases use.

None of the data ships with edge-fas (all are licence-gated); each loader is tested on a small fixture
the tests write in the same layout. Every loader returns a CropSet (see crops.py), converting labels to
our polarity (1 = attack) with the `polarity` argument, because the datasets disagree:

- list files, CASIA-SURF (MmFA) and the MMDG benchmark (`C/P/S/W-{train,val,test}.txt`): lines
  `color depth ir label`, paths relative to the dataset root. CASIA-SURF's label is 1 = real.
- WMCA / HQ-WMCA protocol CSVs: columns filepath, groundtruth, attacktype, fold; groundtruth 1 = bona fide.
- Idiap's preprocessed WMCA HDF5: per-video files with groups `Frame_k/array` (C x H x W, channels
  colour(3), depth, infrared), and PADISI-Face npz files (22 channels, last axis).

Images from these releases are already face crops; they are resized to the model input and go through
edge_fas.preprocess.normalise_crop. Their depth is 8-bit with *brighter = nearer*; it is mapped to a
pseudo-distance (`depth_mm = (256 - v) * DEPTH_8BIT_MM`, 0 stays a hole) so the shared depth
normalisation (median/MAD, nearer positive) applies unchanged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_fas.data.crops import CropSet
from edge_fas.preprocess import PreprocessParams, normalise_crop

__all__ = ["ListRecord", "read_list", "load_list", "read_wmca_protocol", "load_wmca_hdf5", "load_padisi_npz",
           "to_attack_label", "DEPTH_8BIT_MM", "PADISI_CHANNELS"]

DEPTH_8BIT_MM = 4.0  # pseudo-mm per grey level of an 8-bit "brighter = nearer" depth image
# PADISI-Face multi-spectral npz channel order (last axis): BGR, NIR, depth, thermal, then NIR/SWIR bands
PADISI_CHANNELS = {"bgr": (0, 1, 2), "nir": 3, "depth": 4, "thermal": 5}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


def to_attack_label(value: int, polarity: str, where: str) -> int:
    """Convert a dataset label to ours (1 = attack). polarity: 'attack=1' or 'live=1'."""
    if polarity not in ("attack=1", "live=1"):
        raise DatasetError(f"polarity must be 'attack=1' or 'live=1', got {polarity!r}")
    if value not in (0, 1):
        raise DatasetError(f"{where}: label {value} is not 0 or 1")
    return value if polarity == "attack=1" else 1 - value


@dataclass
class ListRecord:
    rgb: Path
    depth: Path
    ir: Path
    label: int  # ours: 1 = attack
    where: str  # "file:line" for error messages


def read_list(path, root=None, polarity: str = "live=1") -> list[ListRecord]:
    """Parse a `color depth ir label` list (CASIA-SURF, MMDG). Paths are relative to `root`
    (default: the list's folder). Malformed lines raise DatasetError naming file and line."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"list file {path} does not exist; point to the dataset's list (e.g. train_list.txt)")
    root = Path(root) if root is not None else path.parent
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{n}"
        if len(parts) != 4:
            raise DatasetError(f"{where}: expected 'color depth ir label' (4 fields), got {len(parts)}: {line.strip()!r}")
        try:
            lab = int(parts[3])
        except ValueError:
            raise DatasetError(f"{where}: label {parts[3]!r} is not an integer") from None
        out.append(ListRecord(root / parts[0], root / parts[1], root / parts[2], to_attack_label(lab, polarity, where), where))
    if not out:
        raise DatasetError(f"list file {path} has no entries")
    return out


def _read_image(p: Path, where: str, grey: bool) -> np.ndarray:
    if not p.exists():
        raise DatasetError(f"{where}: image {p} does not exist (check the dataset root)")
    img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{where}: image {p} could not be decoded")
    return img if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def depth8_to_mm(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32)
    return np.where(v > 0, (256.0 - v) * DEPTH_8BIT_MM, 0.0).astype(np.float32)


def _crop_from_images(rgb, depth8, ir, params: PreprocessParams):
    n = params.size
    rs = lambda a, interp: None if a is None else cv2.resize(a, (n, n), interpolation=interp)  # noqa: E731
    d = rs(depth8, cv2.INTER_NEAREST)
    return normalise_crop(rs(rgb, cv2.INTER_AREA), None if d is None else depth8_to_mm(d), rs(ir, cv2.INTER_AREA), params)


def load_list(path, root=None, polarity: str = "live=1", domain: str = "", params: PreprocessParams | None = None,
              species_of=None) -> CropSet:
    """CropSet from a list file. species_of(record) -> str names the PAI (default 'attack'/'bona_fide')."""
    params = params or PreprocessParams()
    recs = read_list(path, root, polarity)
    crops, labels, species = [], [], []
    for r in recs:
        crops.append(_crop_from_images(_read_image(r.rgb, r.where, False), _read_image(r.depth, r.where, True),
                                       _read_image(r.ir, r.where, True), params))
        labels.append(r.label)
        species.append(species_of(r) if species_of else ("attack" if r.label else "bona_fide"))
    return CropSet.from_crops(crops, labels, species, [domain or Path(path).stem] * len(crops),
                              meta={"source": str(path), "polarity": polarity})


def read_wmca_protocol(path, polarity: str = "live=1") -> list[dict]:
    """WMCA / HQ-WMCA protocol CSV (filepath, groundtruth, attacktype, fold) -> dicts with our label."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"protocol file {path} does not exist")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"filepath", "groundtruth", "attacktype", "fold"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}:1: header lacks column(s) {sorted(missing)}; expected {sorted(need)}")
        rows = []
        for n, row in enumerate(reader, 2):
            where = f"{path}:{n}"
            try:
                gt = int(row["groundtruth"])
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: groundtruth {row['groundtruth']!r} is not an integer") from None
            label = to_attack_label(gt, polarity, where)
            rows.append({"filepath": row["filepath"], "label": label,
                         "species": (row["attacktype"] or "attack") if label else "bona_fide",
                         "fold": row["fold"], "where": where})
    return rows


def load_wmca_hdf5(rows: list[dict], root, fold: str | None = None, frames_per_video: int = 3,
                   params: PreprocessParams | None = None, domain: str = "wmca") -> CropSet:
    """Crops from Idiap's preprocessed HDF5 files (`root/filepath.hdf5`, groups Frame_k/array with
    channels colour(3), depth, infrared in C x H x W, 8-bit), `frames_per_video` evenly spaced frames."""
    import h5py

    params = params or PreprocessParams()
    crops, labels, species = [], [], []
    for r in rows:
        if fold is not None and r["fold"] != fold:
            continue
        p = Path(root) / (r["filepath"] + ("" if r["filepath"].endswith(".hdf5") else ".hdf5"))
        if not p.exists():
            raise DatasetError(f"{r['where']}: {p} does not exist (check the HDF5 root)")
        with h5py.File(p, "r") as h:
            keys = sorted((k for k in h.keys() if k.startswith("Frame_")), key=lambda k: int(k.split("_")[1]))
            if not keys:
                raise DatasetError(f"{p}: no Frame_k groups (is this the preprocessed WMCA release?)")
            for k in np.array(keys)[np.linspace(0, len(keys) - 1, min(frames_per_video, len(keys))).round().astype(int)]:
                a = np.asarray(h[k]["array"])
                if a.ndim != 3 or a.shape[0] < 5:
                    raise DatasetError(f"{p}/{k}/array: shape {a.shape}, expected (>=5, H, W): colour, depth, IR")
                rgb = np.ascontiguousarray(a[:3].transpose(1, 2, 0)).astype(np.uint8)
                crops.append(_crop_from_images(rgb, a[3].astype(np.uint8), a[4].astype(np.uint8), params))
                labels.append(r["label"])
                species.append(r["species"])
    return CropSet.from_crops(crops, labels, species, [domain] * len(crops), meta={"source": str(root)})


def load_padisi_npz(files_labels, params: PreprocessParams | None = None, polarity: str = "attack=1",
                    domain: str = "padisi") -> CropSet:
    """PADISI-Face npz files (array `data`, H x W x 22 or T x H x W x 22); files_labels: [(path, label, species)]."""
    params = params or PreprocessParams()
    crops, labels, species = [], [], []
    for path, lab, sp in files_labels:
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"PADISI file {path} does not exist")
        with np.load(path) as z:
            if "data" not in z:
                raise DatasetError(f"{path}: no array 'data' (found {list(z.keys())})")
            a = z["data"]
        a = a[None] if a.ndim == 3 else a
        if a.ndim != 4 or a.shape[-1] != 22:
            raise DatasetError(f"{path}: data shape {a.shape}, expected (H, W, 22) or (T, H, W, 22)")
        label = to_attack_label(int(lab), polarity, str(path))
        for f in a:
            rgb = cv2.cvtColor(np.clip(f[..., list(PADISI_CHANNELS["bgr"])], 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
            crops.append(_crop_from_images(rgb, np.clip(f[..., PADISI_CHANNELS["depth"]], 0, 255).astype(np.uint8),
                                           np.clip(f[..., PADISI_CHANNELS["nir"]], 0, 255).astype(np.uint8), params))
            labels.append(label)
            species.append(sp if label else "bona_fide")
    return CropSet.from_crops(crops, labels, species, [domain] * len(crops))
