"""Datasets: every source (public datasets, recorded sessions, the synthetic rig) is an index of samples
streamed through DataLoader workers and an on-disk crop cache (stream.py, cache.py, source.py), or
decoded into an in-memory CropSet of normalised face crops for small sets (crops.py).

Public datasets: one reader per family (casia_surf, cefa, wmca, padisi) indexes a release's list or
partition files into Records (records.py) that decode lazily; protocols.py names the papers' protocols
as list files; build.py turns a config's data section into the training splits and named test sets.
"""

from edge_fas.data.crops import CropDataset, CropSet, balanced_sampler, collate, drop_modalities

__all__ = ["CropSet", "CropDataset", "balanced_sampler", "collate", "drop_modalities"]
