"""Datasets (spec strings -> labelled images) and class names (index -> label text)."""

from d4m.data.datasets import KINDS, CorruptImage, DataSpec, LabeledImages, open_dataset

__all__ = ["KINDS", "CorruptImage", "DataSpec", "LabeledImages", "open_dataset"]
