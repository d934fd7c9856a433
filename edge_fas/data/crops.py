"""CropSet: normalised face crops of any source in memory, and the torch Dataset over them.

Every loader (public datasets, sessions, the synthetic rig) ends in a CropSet: arrays in the
FaceCrop layout (rgb 3xSxS, depth 1xSxS, ir 1xSxS, present (3,)) plus label (1 = attack, 0 = bona
fide), PAI species, domain (the dataset, for public data) and, where the source names one, the sample's
path as its list names it. Crops are stored as float16 to halve memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edge_fas.types import FaceCrop

__all__ = ["CropSet", "CropDataset", "balanced_sampler", "collate", "drop_modalities", "appearance",
           "drop_random_modalities", "MODALITIES", "ZOOM", "SHIFT"]

MODALITIES = ("rgb", "depth", "ir")


@dataclass
class CropSet:
    rgb: np.ndarray        # (N, 3, S, S) float16
    depth: np.ndarray      # (N, 1, S, S) float16
    ir: np.ndarray         # (N, 1, S, S) float16
    present: np.ndarray    # (N, 3) bool
    label: np.ndarray      # (N,) int64, 1 = attack
    species: np.ndarray    # (N,) str
    domain: np.ndarray     # (N,) str
    meta: dict = field(default_factory=dict)
    path: np.ndarray | None = None  # (N,) str: the sample as its source lists it ("" where none)

    def __post_init__(self):
        if self.path is None:
            self.path = np.asarray([""] * len(self.label), dtype=str)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @classmethod
    def from_crops(cls, crops: list[FaceCrop], labels, species, domains, meta=None, paths=None) -> "CropSet":
        if not crops:
            raise ValueError("CropSet.from_crops: no crops given (the source produced no usable face)")
        return cls(rgb=np.stack([c.rgb for c in crops]).astype(np.float16),
                   depth=np.stack([c.depth for c in crops]).astype(np.float16),
                   ir=np.stack([c.ir for c in crops]).astype(np.float16),
                   present=np.stack([np.asarray(c.present, bool) for c in crops]),
                   label=np.asarray(labels, np.int64), species=np.asarray(species, dtype=str),
                   domain=np.asarray(domains, dtype=str), meta=dict(meta or {}),
                   path=None if paths is None else np.asarray(paths, dtype=str))

    def subset(self, idx) -> "CropSet":
        idx = np.asarray(idx)
        return CropSet(self.rgb[idx], self.depth[idx], self.ir[idx], self.present[idx], self.label[idx],
                       self.species[idx], self.domain[idx], dict(self.meta), self.path[idx])

    @staticmethod
    def concat(sets: list["CropSet"]) -> "CropSet":
        if not sets:
            raise ValueError("CropSet.concat: nothing to concatenate")
        cat = lambda k: np.concatenate([getattr(s, k) for s in sets])  # noqa: E731
        return CropSet(*(cat(k) for k in ("rgb", "depth", "ir", "present", "label", "species", "domain")),
                       meta=dict(sets[0].meta), path=cat("path"))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, rgb=self.rgb, depth=self.depth, ir=self.ir, present=self.present, label=self.label,
                 species=self.species, domain=self.domain, path=self.path)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "CropSet":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["rgb"], z["depth"], z["ir"], z["present"], z["label"], z["species"], z["domain"],
                       path=z["path"] if "path" in z else None)


def drop_modalities(crops: CropSet, missing) -> CropSet:
    """The same crops with `missing` modalities absent (zeros, present False): MMDG's Protocol 2."""
    from edge_fas.errors import ConfigError

    bad = [m for m in missing if m not in MODALITIES]
    if bad:
        raise ConfigError(f"data.test_missing: unknown modality {bad}; use some of {MODALITIES}")
    out = crops.subset(range(len(crops)))
    for m in missing:
        getattr(out, m)[:] = 0
        out.present[:, MODALITIES.index(m)] = False
    return out


ZOOM = (0.9, 1.1)  # the augmentation's zoom range (scale about the crop centre)
SHIFT = 0.06       # and shift range (+- fraction of the side, per axis)


def _augment(rgb, depth, ir, rng: np.random.Generator, cutout: float):
    """The papers' augmentations (horizontal flip, brightness/gamma on colour, cutout per modality)
    and a small zoom and shift of all modalities together: the live detector's box moves and breathes
    from frame to frame (measured on the rig: centre 4-7% and size 8% of the box, one std).
    (Streaming training, edge_fas.data.stream, zooms and shifts at the source's resolution instead.)"""
    if rng.random() < 0.5:
        rgb, depth, ir = rgb[..., ::-1], depth[..., ::-1], ir[..., ::-1]
    rgb, depth, ir = _zoom_shift((rgb, depth, ir), rng.uniform(*ZOOM), rng.uniform(-SHIFT, SHIFT, 2))
    return appearance(rgb, depth, ir, rng, cutout)


def appearance(rgb, depth, ir, rng: np.random.Generator, cutout: float):
    """The model-size part of the augmentation: brightness and contrast of the (normalised) colour,
    then cutout per modality."""
    rgb = rgb * np.float32(rng.uniform(0.8, 1.2)) + np.float32(rng.uniform(-0.2, 0.2))  # in normalised units
    if cutout > 0:
        s = rgb.shape[-1]
        for a in (rgb, depth, ir):
            if rng.random() < cutout:
                h = int(s * rng.uniform(0.15, 0.35))
                y, x = rng.integers(0, s - h, 2)
                a[..., y:y + h, x:x + h] = 0.0
    return np.ascontiguousarray(rgb), np.ascontiguousarray(depth), np.ascontiguousarray(ir)


def drop_random_modalities(arrays: list, present: np.ndarray, rng: np.random.Generator, drop: dict) -> None:
    """Zero each present modality with its probability in `drop` (missing-modality training), in place;
    one modality always stays."""
    for k, m in enumerate(MODALITIES):
        if present[k] and rng.random() < drop.get(m, 0.0) and present.sum() > 1:
            arrays[k][:] = 0.0
            present[k] = False


def _zoom_shift(arrays, scale: float, shift) -> list[np.ndarray]:
    """Scale about the centre and shift (fractions of the side) each C x H x W array the same way."""
    side = arrays[0].shape[-1]
    c = (side - 1) / 2.0
    m = np.array([[scale, 0.0, c - scale * c + shift[0] * side],
                  [0.0, scale, c - scale * c + shift[1] * side]], np.float32)
    out = []
    for a in arrays:
        hwc = np.ascontiguousarray(np.moveaxis(a, 0, -1))
        w = cv2.warpAffine(hwc, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out.append(np.moveaxis(w.reshape(side, side, -1), -1, 0).astype(np.float32))
    return out


class CropDataset(Dataset):
    """Torch view of a CropSet. Items are dicts: rgb, depth, ir (float32 tensors), present (bool),
    label (long), domain (long id), index. `drop` maps a modality name to a probability of zeroing it (missing-modality
    training)."""

    MODS = ("rgb", "depth", "ir")

    def __init__(self, crops: CropSet, augment: bool = False, seed: int = 0, cutout: float = 0.3,
                 drop: dict | None = None, domain_ids: dict | None = None):
        self.crops, self.augment, self.seed, self.cutout = crops, augment, int(seed), float(cutout)
        # integer domain ids for domain-aware losses (MMDG's prototypes); unknown domains get -1
        ids = domain_ids if domain_ids is not None else {d: k for k, d in enumerate(sorted(set(crops.domain.tolist())))}
        self.domain_id = np.array([ids.get(d, -1) for d in crops.domain.tolist()], np.int64)
        self.drop = dict(drop or {})
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> dict:
        c = self.crops
        rgb, depth, ir = (c.rgb[i].astype(np.float32), c.depth[i].astype(np.float32), c.ir[i].astype(np.float32))
        present = c.present[i].copy()
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            rgb, depth, ir = _augment(rgb, depth, ir, rng, self.cutout)
            arrays = [rgb, depth, ir]
            drop_random_modalities(arrays, present, rng, self.drop)
            rgb, depth, ir = arrays
        return {"rgb": torch.from_numpy(rgb), "depth": torch.from_numpy(depth), "ir": torch.from_numpy(ir),
                "present": torch.from_numpy(present), "label": torch.tensor(int(c.label[i])),
                "domain": torch.tensor(int(self.domain_id[i])), "index": int(i)}


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("rgb", "depth", "ir", "present", "label", "domain")}
    out["index"] = torch.tensor([it["index"] for it in items])
    return out


def balanced_sampler(labels, num_samples: int | None = None, seed: int = 0):
    """WeightedRandomSampler giving bona fide and attack equal weight per draw."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    if np.any(counts == 0):
        raise ValueError("balanced_sampler: one class has no samples; check the training split")
    w = 1.0 / counts[labels]
    g = torch.Generator().manual_seed(int(seed))
    return torch.utils.data.WeightedRandomSampler(torch.as_tensor(w), num_samples or len(labels),
                                                  replacement=True, generator=g)
