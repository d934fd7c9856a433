"""The data of a training run, streamed: the split indices, the crop cache, the augmented training
loader, the validation and test sets, and scoring a model over any of them.

Nothing is decoded before training starts: each split is an index of samples (edge_fas.data.build),
decoded, detected and cropped lazily in `train.workers` DataLoader processes through the on-disk crop
cache (edge_fas.data.stream, edge_fas.data.cache). Training batches are class-balanced draws,
reproducible per (seed, epoch), and the same global batches whatever the number of processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edge_fas import metrics
from edge_fas.errors import ConfigError
from edge_fas.training.config import resolve_workers, train_domain_names

__all__ = ["TrainingData", "training_loader", "open_cache", "build_data", "to_device", "score_loader", "predict",
           "evaluate_crops"]


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def open_cache(cfg: dict):
    """The crop cache of a config (data.cache_dir/crops), or None with data.crop_cache false."""
    from edge_fas.data.cache import CropCache

    d = cfg["data"]
    return CropCache(Path(d["cache_dir"]) / "crops") if d["crop_cache"] else None


def build_data(cfg: dict, split: str, params, domains=None, progress=None):
    """`split` decoded into an in-memory CropSet (edge_fas.data.build.build_split): small sets and tools;
    training itself streams."""
    from edge_fas.data.build import build_split

    return build_split(cfg["data"], split, params, domains=domains, progress=progress)


def training_loader(cfg: dict, train_set, params, cache, domain_ids: dict | None, world: int = 1, rank: int = 0,
                    device="cpu", augment_params=None):
    """(dataset, sampler, loader) streaming the training split as train() does: augmented (augment_params;
    default: the config's data.augment_params with data.drop), class-balanced batches of train.batch_size
    per process, decoded in train.workers persistent processes."""
    from edge_fas.data.stream import BalancedSampler, StreamDataset, make_loader
    from edge_fas.training.config import data_params

    tc = cfg["train"]
    if augment_params is None:
        augment_params = data_params(cfg, params.size)[1]
    ds = StreamDataset(train_set, params, cache, augment=bool(cfg["data"]["augment"]), seed=int(tc["seed"]),
                       domain_ids=domain_ids, augment_params=augment_params)
    bs = int(tc["batch_size"])
    try:
        sampler = BalancedSampler(train_set.label, bs, seed=int(tc["seed"]), world=world, rank=rank)
    except ValueError as e:
        raise ConfigError(f"training split: {e}") from None
    if len(sampler) == 0:
        raise ConfigError(f"training set has {len(train_set)} samples, fewer than train.batch_size={bs}"
                          + (f" x {world} processes" if world > 1 else ""))
    loader = make_loader(ds, bs, sampler=sampler, workers=resolve_workers(tc["workers"]),
                         pin_memory=torch.device(device).type == "cuda")
    return ds, sampler, loader


class TrainingData:
    """One run's data: `train`, `val` (SampleIndex) and `tests` (name -> SampleIndex), the crop cache,
    the domain ids (MMDG's prototypes), and the training `loader` with its `dataset` and `sampler`
    (augmented with `augment_params`, default the config's)."""

    def __init__(self, cfg: dict, params, world: int = 1, rank: int = 0, device="cpu", augment_params=None):
        from edge_fas.data.build import split_index, test_indices

        d = cfg["data"]
        self.params, self.device, self.world, self.rank = params, device, world, rank
        self.workers = resolve_workers(cfg["train"]["workers"])
        self.train, self.val = split_index(d, "train"), split_index(d, "val")
        self.tests = test_indices(d)
        self.cache = open_cache(cfg)
        names = train_domain_names(cfg) if d["source"] != "sessions" else sorted(set(self.train.domain.tolist()))
        self.domain_ids = {name: k for k, name in enumerate(names)}
        self.dataset, self.sampler, self.loader = training_loader(cfg, self.train, params, self.cache, self.domain_ids,
                                                                  world, rank, device, augment_params)

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws and a new class-balanced order for `epoch`."""
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def stream(self, index, domain_ids: dict | None = None):
        """An evaluation view of a set: unaugmented, with its protocol's missing modalities removed."""
        from edge_fas.data.stream import StreamDataset

        return StreamDataset(index, self.params, self.cache, domain_ids=domain_ids,
                             missing=index.meta.get("missing", ()))

    def evaluate(self, model, index, domain_ids=None, threshold=None) -> tuple[dict, np.ndarray]:
        """Metrics and scores of the model on one set (see evaluate_crops). Under torchrun every process
        scores its share of the set with rank 0's buffers and the scores are summed across processes, so each
        one holds every score (and makes the same choices) without all of them scoring the whole set."""
        ds = self.stream(index, domain_ids)
        if self.world == 1:
            return evaluate_crops(model, ds, threshold=threshold, device=self.device, workers=self.workers)
        from edge_fas.training import distributed

        distributed.broadcast_buffers(model)
        scores = _predict_shared(model, ds, self.world, self.rank, self.device, self.workers)
        ok = np.isfinite(scores)
        return metrics.evaluate(scores[ok], ds.index.label[ok], ds.index.species[ok], threshold=threshold), scores

    def score(self, scorer, index, domain_ids=None):
        """The scorer's Scored for one set (the final calibration, operating point and tests). Under torchrun
        every process scores every world-th sample and the shares are gathered, so each one holds the whole
        set's results, in order, as one process would."""
        from edge_fas.scoring import NothingToScore, describe_crops, join_shares

        if self.world == 1:
            return scorer.score(self.stream(index, domain_ids), workers=self.workers)
        import torch.distributed as dist

        share = index.subset(range(self.rank, len(index), self.world))
        try:  # a share may be empty or faceless while the others are not: every process must reach the gather
            mine = scorer.score(self.stream(share, domain_ids), workers=self.workers)
        except NothingToScore:
            mine = None
        shares = [None] * self.world
        dist.all_gather_object(shares, mine)
        return join_shares(shares, describe_crops(index))

    def prototype_batches(self, epoch: int):
        """Batches of a random half of the training samples (seeded by the epoch), unaugmented, on the
        device: what MMDG refreshes its prototypes on (only this half is decoded)."""
        from torch.utils.data import Subset

        from edge_fas.data.stream import make_loader

        rng = np.random.default_rng((epoch, len(self.train)))
        half = np.sort(rng.choice(len(self.train), size=max(1, len(self.train) // 2), replace=False))
        ds = Subset(self.stream(self.train, self.domain_ids), half.tolist())
        for b in make_loader(ds, 64, workers=self.workers, persistent=False,
                             pin_memory=torch.device(self.device).type == "cuda"):
            if b is not None:
                yield to_device(b, self.device)


def score_loader(model, loader, n: int, device="cpu", progress=None) -> np.ndarray:
    """P(attack) for the n samples a loader yields (batches carry their sample indices); NaN where a
    sample gave no face. progress: optional callable(done, total)."""
    model.eval()
    out = np.full(n, np.nan)
    done = 0
    with torch.no_grad():
        for b in loader:
            if b is None:
                continue
            idx = b["index"].numpy()
            b = to_device(b, device)
            out[idx] = model(b["rgb"], b["depth"], b["ir"], b["present"])["score"].float().cpu().numpy()
            done += len(idx)
            if progress:
                progress(done, n)
    return out


def predict(model, data, batch_size: int = 64, device="cpu", workers: int = 0, progress=None) -> np.ndarray:
    """P(attack) for every sample of a CropSet (in memory) or a dataset (a StreamDataset decodes in
    `workers` processes), in order; NaN where a streamed sample has no face."""
    from edge_fas.data import CropDataset, CropSet
    from edge_fas.data.stream import make_loader

    ds = CropDataset(data) if isinstance(data, CropSet) else data
    loader = make_loader(ds, batch_size, workers=workers, persistent=False,
                         pin_memory=torch.device(device).type == "cuda")
    return score_loader(model, loader, len(ds), device, progress)


def _predict_shared(model, ds, world: int, rank: int, device, workers: int) -> np.ndarray:
    """predict() over `world` processes: this one scores every world-th sample from `rank`; the scores are
    all-reduced (NaN, no face, stays NaN)."""
    import torch.distributed as dist
    from torch.utils.data import Subset

    from edge_fas.data.stream import make_loader

    loader = make_loader(Subset(ds, list(range(rank, len(ds), world))), 64, workers=workers, persistent=False,
                         pin_memory=torch.device(device).type == "cuda")
    own = score_loader(model, loader, len(ds), device)  # NaN outside this process's share
    scored = np.isfinite(own)
    both = torch.tensor(np.stack([np.where(scored, own, 0.0), scored.astype(np.float64)]), dtype=torch.float64,
                        device=device)
    dist.all_reduce(both)
    total, count = both.cpu().numpy()
    return np.where(count > 0, total, np.nan)


def evaluate_crops(model, crops, threshold=None, device="cpu", workers: int = 0) -> tuple[dict, np.ndarray]:
    """Metrics and scores of a CropSet or StreamDataset (samples with no face left out of the metrics)."""
    scores = predict(model, crops, device=device, workers=workers)
    labels, species = (crops.index.label, crops.index.species) if hasattr(crops, "index") else (crops.label,
                                                                                               crops.species)
    ok = np.isfinite(scores)
    return metrics.evaluate(scores[ok], labels[ok], species[ok], threshold=threshold), scores
