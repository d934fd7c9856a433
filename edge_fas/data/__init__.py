"""Datasets: every source ends as a CropSet of normalised face crops (see crops.py).

Public datasets: one reader per family (casia_surf, cefa, wmca, padisi) indexes a release's list or
partition files into Records (records.py) that decode lazily; protocols.py names the papers' protocols
as list files; build.py turns a config's data section into the training splits and named test sets.
"""

from edge_fas.data.crops import CropDataset, CropSet, balanced_sampler, collate, drop_modalities

__all__ = ["CropSet", "CropDataset", "balanced_sampler", "collate", "drop_modalities"]
