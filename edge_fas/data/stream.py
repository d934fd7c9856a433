"""Streaming data: every source (public dataset records, recorded sessions, the synthetic rig) as an
index of small sample descriptions, decoded, detected and cropped lazily in DataLoader workers.

    index = SampleIndex(samples, meta={"data": "..."})     # labels, species, domains, paths: no pixels
    ds = StreamDataset(index, params, cache=CropCache(dir), augment=True, seed=0,
                       augment_params=AugmentParams(photometric=0.8, drop={"depth": 0.1}))
    loader = make_loader(ds, batch_size=32, sampler=BalancedSampler(index.label, 32, seed=0), workers=4)

A sample is any object with `label`, `species`, `dataset`, `listed`, `identity()` (what its pixels
depend on, for the crop cache key), `needs_detector(detect)` and `source(params, detector)` (its
SourceCrop, or None where no face is found): edge_fas.data.records.Record, sessions.SessionSample,
synthetic.SyntheticSample. The index keeps them pickled in one byte buffer, so forked workers share
it page for page (a list of Python objects would be copied into every worker as its reference counts
change). Memory is the index (a few hundred bytes per sample) plus what the batches and the workers
hold; it does not grow with the pixels of the dataset, and workers share the index's byte buffer.

Augmentation (training; edge_fas.data.augment, its AugmentParams) draws, per sample and epoch, from a
generator seeded by (seed, epoch, index): the flip, zoom and shift are drawn first, the zoom and shift
act on the SourceCrop at its own resolution before the resize (edge_fas.data.source.finish), the flip
on the model-size crop; then the colour gain, the per-modality photometric changes, cutout and
modality dropout (augment.appearance, the code the in-memory CropDataset runs), in the same order and
from the same draws as CropDataset.
"""

from __future__ import annotations

import functools
import os
import pickle
import threading
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_fas.data.augment import MODALITIES, AugmentParams, appearance, draw_geometry
from edge_fas.data.crops import collate
from edge_fas.data.species import family_index
from edge_fas.data.source import finish

__all__ = ["SampleIndex", "StreamDataset", "BalancedSampler", "collate_present", "make_loader", "fill_cache", "detector"]


class SampleIndex:
    """The samples of one split or test set: their descriptions (decoded on demand) and, as arrays,
    label (1 = attack), species, domain (dataset) and path (as the source lists it).

    detect: re-detect faces in releases that ship crops (data.detect). meta["data"] says in words what
    the set is (reports carry it). The pickled descriptions live in one torch byte tensor, which
    DataLoader workers receive as shared memory, not as a copy each."""

    def __init__(self, samples, meta: dict | None = None, detect: bool = False):
        samples = list(samples)
        blobs = [pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in samples]
        offsets = np.zeros(len(blobs) + 1, np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        self._offsets = torch.from_numpy(offsets)
        self._blob = torch.frombuffer(bytearray(b"".join(blobs)) or bytearray(1), dtype=torch.uint8)
        self.label = np.asarray([s.label for s in samples], np.int64)
        self.species = np.asarray([s.species for s in samples], dtype=str)
        self.domain = np.asarray([s.dataset for s in samples], dtype=str)
        self.path = np.asarray([s.listed for s in samples], dtype=str)
        self.meta = dict(meta or {})
        self.detect = bool(detect)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def sample(self, i: int):
        a, b = self._offsets[i].item(), self._offsets[i + 1].item()
        return pickle.loads(self._blob[a:b].numpy().tobytes())

    def samples(self):
        return (self.sample(i) for i in range(len(self)))

    def subset(self, idx) -> "SampleIndex":
        return SampleIndex([self.sample(int(i)) for i in np.asarray(idx).reshape(-1)], self.meta, self.detect)

    def lean(self) -> "SampleIndex":
        """The same index without the report arrays (species, domain, path): what a worker needs."""
        out = SampleIndex.__new__(SampleIndex)
        out._offsets, out._blob, out.label, out.detect, out.meta = self._offsets, self._blob, self.label, self.detect, {}
        out.species = out.domain = out.path = None
        return out

    @property
    def nbytes(self) -> int:
        """Memory the index holds (its byte buffer and metadata arrays)."""
        arrays = (self._blob, self._offsets, self.label, self.species, self.domain, self.path)
        return int(sum(a.nbytes for a in arrays if a is not None))

    @staticmethod
    def concat(indices: list["SampleIndex"]) -> "SampleIndex":
        if not indices:
            raise ValueError("SampleIndex.concat: nothing to concatenate")
        return SampleIndex([s for ix in indices for s in ix.samples()], indices[0].meta, indices[0].detect)


_DETECTOR = None  # (pid, FaceDetector): one per process, a forked worker opens its own


def detector():
    """This process's BlazeFace detector (the live pipeline's), opened on first use."""
    global _DETECTOR
    if _DETECTOR is None or _DETECTOR[0] != os.getpid():
        from edge_fas.face import FaceDetector

        _DETECTOR = (os.getpid(), FaceDetector())
    return _DETECTOR[1]


class StreamDataset(Dataset):
    """Torch view of a SampleIndex, decoding each sample when asked (through the crop cache if given).

    Items are the dicts CropDataset gives (rgb, depth, ir float32 tensors, present, label, domain id,
    index), or None for a sample with no face (collate_present drops it). `missing`: modalities
    removed from every item (MMDG Protocol 2's test sets). With augment=True each item is augmented
    with `augment_params` (default: AugmentParams with this `cutout` and `drop`, modality -> probability
    of removing it during training)."""

    def __init__(self, index: SampleIndex, params, cache=None, augment: bool = False, seed: int = 0,
                 cutout: float = 0.3, drop: dict | None = None, domain_ids: dict | None = None, missing=(),
                 augment_params: AugmentParams | None = None):
        from edge_fas.errors import ConfigError

        self.index, self.params, self.cache = index, params, cache
        self.augment, self.seed = bool(augment), int(seed)
        self.augment_params = augment_params or AugmentParams(cutout=float(cutout), drop=dict(drop or {}))
        ids = domain_ids if domain_ids is not None else {d: k for k, d in enumerate(sorted(set(index.domain.tolist())))}
        self.domain_id = np.array([ids.get(d, -1) for d in index.domain.tolist()], np.int64)
        self.family_id = np.array([family_index(s) for s in index.species.tolist()], np.int64)
        bad = [m for m in missing if m not in MODALITIES]
        if bad:
            raise ConfigError(f"data.test_missing: unknown modality {bad}; use some of {MODALITIES}")
        self.missing = tuple(missing)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # what a DataLoader worker receives: the index without its report arrays
        return {**self.__dict__, "index": self.index.lean()}

    def source(self, i: int):
        """Sample i's SourceCrop (from the cache, else decoded and then cached), or None (no face)."""
        return self._source(i)[1]

    def fill(self, i: int) -> str:
        """Make sure sample i is in the cache; say how: "cached", "built", "rebuilt" (the entry was
        corrupt), each with " no-face" appended for a sample without a face."""
        status, src = self._source(i)
        return status + (" no-face" if src is None else "")

    def _source(self, i: int):
        from edge_fas.data.cache import NO_FACE, crop_key

        s = self.index.sample(i)
        det = s.needs_detector(self.index.detect)
        key, status = None, "built"
        if self.cache is not None:
            key = crop_key(s.identity(), self.params, det)
            found, hit = self.cache.lookup(key)
            if found == "hit":
                return "cached", (None if hit is NO_FACE else hit)
            status = "rebuilt" if found == "corrupt" else "built"
        src = s.source(self.params, detector() if det else None)
        if key is not None:
            self.cache.put(key, src)
        return status, src

    def __getitem__(self, i: int):
        i = int(i)
        src = self.source(i)
        if src is None:
            return None
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            flip, scale, shift = draw_geometry(rng, self.augment_params)
            crop = finish(src, self.params, geometry=(scale, shift))
            rgb, depth, ir = crop.rgb, crop.depth, crop.ir
            if flip:
                rgb, depth, ir = rgb[..., ::-1], depth[..., ::-1], ir[..., ::-1]
            rgb, depth, ir, present = appearance(rgb, depth, ir, crop.present, rng, self.augment_params)
        else:
            crop = finish(src, self.params)
            rgb, depth, ir, present = crop.rgb, crop.depth, crop.ir, np.asarray(crop.present, bool).copy()
        arrays = [np.ascontiguousarray(a, np.float32) for a in (rgb, depth, ir)]
        for m in self.missing:
            k = MODALITIES.index(m)
            arrays[k][:] = 0.0
            present[k] = False
        return {"rgb": torch.from_numpy(arrays[0]), "depth": torch.from_numpy(arrays[1]),
                "ir": torch.from_numpy(arrays[2]), "present": torch.from_numpy(present),
                "label": torch.tensor(int(self.index.label[i])), "domain": torch.tensor(int(self.domain_id[i])),
                "family": torch.tensor(int(self.family_id[i])), "index": i}


def collate_present(items: list) -> dict | None:
    """collate() over the items that have a face; None when none has."""
    items = [it for it in items if it is not None]
    return collate(items) if items else None


class BalancedSampler(torch.utils.data.Sampler):
    """Class-balanced draws (bona fide and attack equally likely, with replacement, as
    WeightedRandomSampler), `len(labels)` per epoch, reproducible from (seed, epoch), and the same
    global batches whatever the number of processes: process `rank` of `world` takes its
    `batch_size` slice of every global batch of batch_size x world. Only whole global batches are
    drawn."""

    def __init__(self, labels, batch_size: int, seed: int = 0, world: int = 1, rank: int = 0):
        labels = np.asarray(labels)
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        if labels.size == 0 or np.any(counts == 0):
            raise ValueError("BalancedSampler: one class has no samples; check the training split")
        self.p = (1.0 / counts[labels]) / (1.0 / counts[labels]).sum()
        self.batch, self.seed, self.world, self.rank = int(batch_size), int(seed), int(world), int(rank)
        self.batches = len(labels) // (self.batch * self.world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches * self.batch

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        draws = rng.choice(len(self.p), size=self.batches * self.batch * self.world, replace=True, p=self.p)
        mine = draws.reshape(self.batches, self.world, self.batch)[:, self.rank].reshape(-1)
        return iter(mine.tolist())


def _worker_init(parent_pid: int, _worker_id: int):
    import cv2

    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV's own threads would oversubscribe the cores
    threading.Thread(target=_exit_with, args=(parent_pid,), name="exit-with-parent", daemon=True).start()


def _exit_with(parent_pid: int, every_s: float = 1.0):
    """End this worker once the process that made the loader is gone. torch's own watchdog compares the
    worker's parent pid, which under forkserver is the forkserver, not the training process: a killed
    `edge-fas train` left its workers rendering on every core (seen here)."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(parent_pid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user's process
            os._exit(0)


def _worker_context():
    """Workers start from a clean forkserver process (spawn where there is none), never by forking the
    training process: a fork copies whatever locks its OpenCV, OpenMP or detector threads held at that
    moment, and a worker forked mid-render hung in cv2.setNumThreads (seen here, under pytest)."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["edge_fas.data.build"])  # the readers and preprocessing, imported once
        return ctx
    return mp.get_context("spawn")


def make_loader(dataset, batch_size: int, sampler=None, workers: int = 0, pin_memory: bool = False,
                persistent: bool = True, collate_fn=collate_present) -> torch.utils.data.DataLoader:
    """A DataLoader over a StreamDataset (or CropDataset): `workers` processes decode, persistent
    across epochs; pinned memory for a CUDA device; in order when there is no sampler."""
    workers = int(workers)
    return torch.utils.data.DataLoader(dataset, batch_size=int(batch_size), sampler=sampler, shuffle=False,
                                       collate_fn=collate_fn, num_workers=workers,
                                       persistent_workers=persistent and workers > 0, pin_memory=pin_memory,
                                       worker_init_fn=functools.partial(_worker_init, os.getpid()) if workers > 0 else None,
                                       multiprocessing_context=_worker_context() if workers > 0 else None,
                                       prefetch_factor=2 if workers > 0 else None)


class _Fill(Dataset):
    """Items fill the cache and say how (StreamDataset.fill)."""

    def __init__(self, ds: StreamDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> str:
        return self.ds.fill(i)


def fill_cache(ds: StreamDataset, workers: int = 0, batch: int = 8):
    """Put every sample of `ds` in its crop cache, decoding in `workers` processes; yields each
    sample's status (StreamDataset.fill) in order."""
    for statuses in make_loader(_Fill(ds), batch, workers=workers, persistent=False, collate_fn=list):
        yield from statuses
