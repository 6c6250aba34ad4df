"""``--data hf:PATH[:SPLIT]``: a local Hugging Face ``datasets`` dataset as ``LabeledImages``.

PATH is a dataset saved with ``save_to_disk`` (a ``DatasetDict`` folder or a single ``Dataset``), a parquet file or a
folder of parquet files (split names from the file names, as ``load_dataset("parquet")`` infers them), or an
``imagefolder`` dataset (``load_dataset("imagefolder")``: ``train/<class>/...``, ``test/<class>/...``). It needs one
``Image`` column and one ``ClassLabel`` column: the class ids are the ClassLabel's names, in its order.

Nothing is read whole into memory: ``save_to_disk`` data is memory-mapped Arrow as it lies; parquet and imagefolder
data go through ``datasets``' Arrow cache (written once to disk, then memory-mapped). Only the label column is read
up front; each image is decoded when it is loaded.

Without SPLIT, the training role reads ``train`` and the validation role the first of ``validation``, ``valid``,
``val``, ``test``; with SPLIT, both read that split (as ``folder:`` serves both roles).
"""

from __future__ import annotations

import logging

import io
from pathlib import Path

import numpy as np

from d4m.data.classnames import label_text
from d4m.data.datasets import ItemNames, LabeledImages
from d4m.data.images import CorruptImage, load_rgb
from d4m.errors import ConfigError, DataError

VAL_SPLITS = ("validation", "valid", "val", "test")


def split_spec(value: str) -> tuple[Path, str | None]:
    """'PATH[:SPLIT]' -> (PATH, SPLIT or None); a trailing ':name' without '/' is the split."""
    head, sep, tail = value.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return Path(head).expanduser(), tail
    return Path(value).expanduser(), None


def _datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError("--data hf:... needs the 'datasets' package: pip install 'd4m[export]'") from None
    return datasets


def _load(path: Path, name: str):
    """A Dataset or DatasetDict for PATH (see the module docstring for the layouts)."""
    datasets = _datasets()
    if not path.exists():
        raise DataError(f"{name}: {path} does not exist")
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            return datasets.load_from_disk(str(path))
        if path.is_file() and path.suffix == ".parquet":
            return datasets.load_dataset("parquet", data_files={"train": str(path)})
        if path.is_dir() and any(path.rglob("*.parquet")):
            return datasets.load_dataset("parquet", data_dir=str(path))
        if path.is_dir():
            return datasets.load_dataset("imagefolder", data_dir=str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"{name}: cannot read it as a datasets dataset ({str(exc).splitlines()[0][:200]})") from None
    raise DataError(f"{name}: {path} is neither a saved dataset, parquet, nor an imagefolder dataset")


def _pick_split(data, split: str | None, role: str, name: str):
    datasets = _datasets()
    if isinstance(data, datasets.Dataset):
        if split is not None and data.split is not None and str(data.split) != split:
            raise DataError(f"{name}: a single dataset of split {data.split!r}, not {split!r}")
        return data
    splits = list(data.keys())
    wanted = [split] if split else (["train"] if role == "train" else list(VAL_SPLITS))
    for s in wanted:
        if s in data:
            return data[s]
    raise DataError(f"{name}: no split {' / '.join(wanted)} (splits: {', '.join(splits)}); "
                    f"name one as hf:PATH:SPLIT")


def _columns(ds, name: str) -> tuple[str, str]:
    """(image column, ClassLabel column); DataError naming the columns when one is missing or ambiguous."""
    datasets = _datasets()
    feats = ds.features
    images = [k for k, f in feats.items() if isinstance(f, datasets.Image)]
    labels = [k for k, f in feats.items() if isinstance(f, datasets.ClassLabel)]
    listed = ", ".join(f"{k} ({type(f).__name__})" for k, f in feats.items())
    if not images:
        raise DataError(f"{name}: no Image column (columns: {listed})")
    if not labels:
        raise DataError(f"{name}: no ClassLabel column (columns: {listed}); cast the label column with "
                        "ds.cast_column(NAME, ClassLabel(names=[...]))")
    image, label = _one(images, "image"), _one(labels, "label")
    if image is None or label is None:
        raise DataError(f"{name}: several {'Image' if image is None else 'ClassLabel'} columns and none named "
                        f"{'image' if image is None else 'label'} (columns: {listed})")
    if len(images) > 1 or len(labels) > 1:  # several candidates: the one named so is used, and said
        logging.getLogger(__name__).warning("%s: several candidate columns; using %r (Image) and %r (ClassLabel) "
                                            "of: %s", name, image, label, listed)
    return image, label


def _one(columns: list[str], preferred: str) -> str | None:
    if len(columns) == 1:
        return columns[0]
    return preferred if preferred in columns else None


def open_hf(value: str, role: str) -> LabeledImages:
    """The ``role`` ('train' or 'val') split of ``hf:VALUE`` as ``LabeledImages``."""
    datasets = _datasets()
    path, split = split_spec(value)
    name = f"hf:{value}"
    ds = _pick_split(_load(path, name), split, role, name)
    image, label = _columns(ds, name)
    classes = list(ds.features[label].names)
    targets = np.asarray(ds.select_columns([label]).with_format("numpy")[label], dtype=np.int64)
    if len(targets) == 0:
        raise DataError(f"{name}: the split has no rows")
    if targets.min() < 0:
        raise DataError(f"{name}: column {label!r} has unlabelled rows (-1); d4m needs a class for every image")
    raw = ds.select_columns([image]).cast_column(image, datasets.Image(decode=False))

    return LabeledImages(name, classes, [label_text(c) for c in classes], targets.tolist(),
                         HFImages(raw, image, name), ItemNames(f"{name}[{ds.split or split or role}]"))


class HFImages:
    """Item i of a datasets column of undecoded images, decoded like a file (picklable for spawned workers)."""

    def __init__(self, raw, column: str, name: str):
        self.raw, self.column, self.name = raw, column, name

    def __call__(self, i: int):
        cell = self.raw[int(i)][self.column]
        if not isinstance(cell, dict) or not (cell.get("bytes") or cell.get("path")):
            raise CorruptImage(f"{self.name}[{i}]: cannot decode image (an empty cell)")
        src = io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]
        return load_rgb(src, f"{self.name}[{i}]")
