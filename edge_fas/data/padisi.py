"""PADISI-Face (USC ISI): the multi-spectral npz release and the MMDG-Benchmark P lists.

Layouts followed:
- the PADISI_USC_Dataset README (README_FACE.md, github.com/vimal-isi-edu/PADISI_USC_Dataset): one
  `.npz` per sample whose array `data` has shape (1, 22, 320, 256): frames, channels, height, width;
  every channel normalised to 0-1 by the camera's bit depth; channels 0-2 colour in BGR order, 3 NIR
  (RealSense), 4 depth (RealSense), 5 thermal, 6-21 NIR/SWIR bands. Files are named
  `ID_<transaction_id>_<trial_id>_<trial_name>.npz`; the ground truth
  (`padisi_USC_FACE_ground_truth.csv`: transaction_id, trial_id, trial_name, ground_truth with
  m00000 bona fide and m5<PAI code><species> attacks) gives the PAI code;
- the MMDG-Benchmark P lists (github.com/OMGGGGG/mmdg): `zXXXXXXX.npz<TAB>label`, label 1 = bona fide
  (their label-1 lines are PADISI's 1,105 bona fide samples). The npz files are looked up in
  DATA_ROOT/PADISI/ (then DATA_ROOT/). Their names are MMDG's own, so the PAI code comes from a
  `pai_code` entry in the npz where there is one, from the ground truth where the file keeps its
  PADISI name, and is otherwise unknown (species `attack`).

Depth is taken as the RealSense's raw 16-bit units (0-1 x 65535) in millimetres, larger = farther, as
the live pipeline's RealSense depth; NIR keeps 16-bit precision. The arrays are face crops (320 x 256),
resized to the model input, not re-detected (unless data.detect).
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge_fas.data.images import aligned_source
from edge_fas.data.lists import ListLine, to_attack_label
from edge_fas.data.records import DatasetError, Record, frame_index
from edge_fas.data.species import BONA_FIDE, padisi_species

__all__ = ["DATASET", "CHANNELS", "GROUND_TRUTH", "records", "source"]

DATASET = "padisi"
CHANNELS = {"bgr": (0, 1, 2), "nir": 3, "depth": 4, "thermal": 5, "count": 22}
GROUND_TRUTH = "padisi_USC_FACE_ground_truth.csv"
FOLDER = "PADISI"


@lru_cache(maxsize=4)
def _ground_truth(path: str) -> dict[str, str]:
    """ID_<transaction>_<trial>_<name> -> ground-truth code."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return {f"ID_{r['transaction_id']}_{r['trial_id']}_{r['trial_name']}": r["ground_truth"]
                for r in csv.DictReader(f)}


def _find(root: Path, name: str, where: str) -> Path:
    for p in (root / FOLDER / name, root / name):
        if p.is_file():
            return p
    raise DatasetError(f"{where}: {name} is in neither {root / FOLDER} nor {root}; put the PADISI-Face npz files "
                       f"in DATA_ROOT/{FOLDER}/")


def _code(path: Path, where: str) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in ("pai_code", "pai_codes", "ground_truth"):
                if key in z.files:
                    return str(np.asarray(z[key]).reshape(-1)[0])
    except (OSError, ValueError) as e:
        raise DatasetError(f"{where}: {path} is not a readable npz file ({e}); re-extract it") from None
    gt = path.parent / GROUND_TRUTH
    if path.stem.startswith("ID_") and gt.is_file():
        return _ground_truth(str(gt)).get(path.stem)
    return None


def records(line: ListLine, polarity: str, root: Path, frames_per_video: int = 1) -> list[Record]:
    """The record of one P-list line (`name.npz label`)."""
    if len(line.fields) != 1:
        raise DatasetError(f"{line.where}: a PADISI list line is 'file.npz<TAB>label'")
    (name,) = line.fields
    label = to_attack_label(line.value, polarity, line.where)
    path = _find(root, name, line.where)
    code = _code(path, line.where)
    species = padisi_species(code) if code else None
    if code and species is None:
        raise DatasetError(f"{line.where}: {path} carries PAI code {code!r}, not a PADISI code (m00000 or m5CCSS)")
    if species is not None and (species == BONA_FIDE) != (label == 0):
        raise DatasetError(f"{line.where}: the label reads as {'attack' if label else 'bona fide'} under this list's "
                           f"polarity ({polarity}) but {path.name} carries code {code}; check the file")
    species = BONA_FIDE if label == 0 else (species or "attack")
    return [Record("padisi_npz", (str(path),), label, species, DATASET, name, line.where, (0, frames_per_video))]


def source(record: Record, params, detector=None):
    (path,) = record.files
    try:
        with np.load(path, allow_pickle=False) as z:
            if "data" not in z.files:
                raise DatasetError(f"{record.where}: {path} has no array 'data' (found {z.files})")
            a = z["data"]
    except (OSError, ValueError) as e:
        raise DatasetError(f"{record.where}: {path} is not a readable npz file ({e}); re-extract it") from None
    a = a[None] if a.ndim == 3 else a
    if a.ndim != 4 or a.shape[1] != CHANNELS["count"]:
        raise DatasetError(f"{record.where}: {path} data shape {a.shape}, expected (frames, 22, H, W) as the "
                           "PADISI-Face multi-spectral release stores it (channels first)")
    k, n = record.frame or (0, 1)
    f = a[frame_index(k, n, a.shape[0])].astype(np.float32)
    if not np.all(np.isfinite(f)) or f.min() < 0.0 or f.max() > 1.0 + 1e-6:
        raise DatasetError(f"{record.where}: {path} values span {f.min():.3g}..{f.max():.3g}; the release normalises "
                           "every channel to 0-1")
    bgr = np.round(np.moveaxis(f[list(CHANNELS["bgr"])], 0, -1) * 255.0).astype(np.uint8)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    ir = np.round(f[CHANNELS["nir"]] * 65535.0).astype(np.uint16)
    depth_mm = f[CHANNELS["depth"]] * 65535.0
    return aligned_source(rgb, depth_mm, ir, params, detector)
