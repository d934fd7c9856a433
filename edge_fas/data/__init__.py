"""Datasets: every source ends as a CropSet of normalised face crops (see crops.py)."""

from edge_fas.data.crops import CropDataset, CropSet, balanced_sampler, collate

__all__ = ["CropSet", "CropDataset", "balanced_sampler", "collate"]
