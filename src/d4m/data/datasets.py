"""Labelled image datasets behind one spec string: ``KIND:PATH``.

``cifar10:ROOT`` / ``cifar100:ROOT`` (torchvision; downloaded into ROOT when online), ``tiny-imagenet:ROOT``
(official tiny-imagenet-200 layout), ``imagenet:ROOT`` (train/<wnid>/, val/<wnid>/), ``folder:PATH`` (any
ImageFolder: one sub-folder per class, sorted names = class order), ``hf:PATH[:SPLIT]`` (a local Hugging Face
``datasets`` dataset, see ``d4m.data.hf``).

Every dataset is a ``LabeledImages``: ``classes`` (ids: folder names or wnids), ``label_texts`` (what a prompt
says), ``targets`` and ``load(i)`` returning an RGB PIL image.
"""

from __future__ import annotations

import logging

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from d4m.data.classnames import cifar_names, imagenet_label_texts, label_text, tiny_imagenet_words
from d4m.data.images import CorruptImage, is_image_file, load_rgb
from d4m.errors import DataError

KINDS = ("cifar10", "cifar100", "tiny-imagenet", "imagenet", "folder", "hf")


@dataclass(frozen=True)
class DataSpec:
    kind: str
    root: Path

    @classmethod
    def parse(cls, spec: str) -> "DataSpec":
        if not isinstance(spec, str) or ":" not in spec:
            raise DataError(f"--data {spec!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
        kind, _, root = spec.partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise DataError(f"--data {spec!r}: unknown dataset kind {kind!r} (one of {', '.join(KINDS)})")
        if not root:
            raise DataError(f"--data {spec!r}: missing path after '{kind}:'")
        return cls(kind, Path(root).expanduser())

    def __str__(self) -> str:
        return f"{self.kind}:{self.root}"


class LabeledImages(torch.utils.data.Dataset):
    """Images with integer targets; ``transform`` maps an RGB PIL image to what ``__getitem__`` returns."""

    def __init__(self, name: str, classes: Sequence[str], label_texts: Sequence[str], targets: Sequence[int],
                 loader: Callable[[int], Image.Image], describe: Callable[[int], str], transform=None):
        self.name = name
        self.classes = list(classes)
        self.label_texts = list(label_texts)
        self.targets = [int(t) for t in targets]
        self._loader, self._describe = loader, describe
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> Image.Image:
        return self._loader(index)

    def describe(self, index: int) -> str:
        """A human-readable location of item ``index`` (its file path)."""
        return self._describe(index)

    def __getitem__(self, index: int):
        img = self.load(index)
        return (self.transform(img) if self.transform else img), self.targets[index]

    def indices_of(self, cls: int) -> list[int]:
        return [i for i, t in enumerate(self.targets) if t == cls]


# Loaders are small classes, not lambdas: a dataset travels to data-loader workers by pickle where processes are
# spawned (macOS, Windows), and a lambda cannot be pickled.
class FileImages:
    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __call__(self, i: int) -> Image.Image:
        return load_rgb(self.paths[i])


class FilePaths(FileImages):
    def __call__(self, i: int) -> str:
        return str(self.paths[i])


class ArrayImages:
    def __init__(self, data: np.ndarray):
        self.data = data

    def __call__(self, i: int) -> Image.Image:
        return Image.fromarray(self.data[i])


class ItemNames:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, i: int) -> str:
        return f"{self.prefix}[{i}]"


def open_dataset(spec: str | DataSpec, split: str = "train", transform=None, download: bool = True,
                 strict: bool = False) -> LabeledImages:
    """Open the ``split`` ('train' or 'val') of the dataset named by ``spec``.

    A class folder holding no image is not a class: named in a warning, or (``strict``) refused in one line."""
    spec = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if spec.kind in ("cifar10", "cifar100"):
        ds = _cifar(spec, split, download)
    elif spec.kind == "tiny-imagenet":
        ds = _tiny_imagenet(spec.root, split, strict)
    elif spec.kind == "imagenet":
        sub = spec.root / ("train" if split == "train" else "val")
        ds = _folder(sub, f"imagenet:{sub}", texts=imagenet_label_texts, strict=strict)
    elif spec.kind == "hf":
        from d4m.data.hf import open_hf

        ds = open_hf(str(spec.root), split)
    else:
        ds = _folder(spec.root, f"folder:{spec.root}", strict=strict)
    ds.transform = transform
    return ds


def first_readable_size(dataset: LabeledImages, tries: int = 1000) -> int:
    """The width of the dataset's first image that decodes (a corrupt first file is skipped, as encoding skips it)."""
    for i in range(min(len(dataset), tries)):
        try:
            return dataset.load(i).size[0]
        except CorruptImage:
            continue
    raise DataError(f"{dataset.name}: none of its first {min(len(dataset), tries)} images can be decoded")


def _files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))


def _named(empty: list[str]) -> str:
    """The first five names of a list, and how many more."""
    return ", ".join(repr(e) for e in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")


def _empty_folders(root: Path, empty: list[str]) -> DataError:
    """The one line refusing image-less class folders (--strict), naming them."""
    return DataError(f"{root}: {len(empty)} class folder(s) hold no image: {_named(empty)} (--strict refuses "
                     "them; remove the folders, or leave out --strict to skip them)")


def _folder(root: Path, name: str, texts: Callable[[list[str]], list[str]] | None = None,
            strict: bool = False) -> LabeledImages:
    if not root.exists():
        raise DataError(f"{root}: data path does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected one sub-folder of images per class)")
    paths, targets, classes, empty = [], [], [], []
    for d in class_dirs:
        files = _files_of(d)
        if not files:
            empty.append(d.name)
            continue
        classes.append(d.name)
        paths += files
        targets += [len(classes) - 1] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files in its class folders{_layout_hint(root, class_dirs)}")
    if empty and strict:
        raise _empty_folders(root, empty)
    if empty:  # never silent: a class folder without images is not a class (its index is not taken)
        logging.getLogger(__name__).warning("%s: %d class folder(s) hold no image and are not classes: %s "
                                            "(--strict refuses them)", root, len(empty), _named(empty))
    label_texts = texts(classes) if texts else [label_text(c) for c in classes]
    return LabeledImages(name, classes, label_texts, targets, FileImages(paths), FilePaths(paths))


def _layout_hint(root: Path, class_dirs: list[Path]) -> str:
    """Where the images of a folder with image-less class folders are: the dataset kind (or path) that reads it."""
    tiny = root.parent if root.name in ("train", "val") else root
    nested_images = any((d / "images").is_dir() and _files_of(d / "images") for d in class_dirs[:20])
    if (tiny / "wnids.txt").is_file() or nested_images:
        return (f"; this is the Tiny-ImageNet layout (train/<wnid>/images/*.JPEG): use --data tiny-imagenet:{tiny} "
                "(the folder holding wnids.txt, train/ and val/)")
    names = {d.name for d in class_dirs}
    if {"train", "val"} <= names:
        return f"; it holds train/ and val/: use imagenet:{root} for the ImageNet layout, or folder:{root}/train"
    for d in class_dirs[:20]:
        inner = [c for c in sorted(d.iterdir()) if c.is_dir() and _files_of(c)] if d.is_dir() else []
        if inner:
            return f"; the images are one level deeper (e.g. {inner[0]}): use folder:{d}"
    return ""


def _cifar(spec: DataSpec, split: str, download: bool) -> LabeledImages:
    from torchvision import datasets as tvd

    cls = tvd.CIFAR10 if spec.kind == "cifar10" else tvd.CIFAR100
    train = split == "train"
    try:
        ds = cls(str(spec.root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DataError(f"{spec.root}: no {spec.kind} data there (and download disabled)") from None
        try:
            ds = cls(str(spec.root), train=train, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"{spec.root}: {spec.kind} not found and download failed ({exc})") from None
    expected = cifar_names(spec.kind)
    if list(ds.classes) != expected:
        raise DataError(f"{spec.root}: {spec.kind} meta lists classes {ds.classes[:3]}..., expected {expected[:3]}...")
    data: np.ndarray = ds.data
    return LabeledImages(f"{spec}/{split}", expected, [label_text(c) for c in expected], ds.targets,
                         ArrayImages(data), ItemNames(f"{spec}[{split}]"))


def _tiny_imagenet(root: Path, split: str, strict: bool = False) -> LabeledImages:
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"{wnids_file}: missing (not a tiny-imagenet-200 folder?)")
    wnids = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
    texts = tiny_imagenet_words(root, wnids)
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    targets: list[int] = []
    if split == "train":
        empty = []
        for w in wnids:
            d = root / "train" / w / "images"
            if not d.is_dir():
                raise DataError(f"{d}: missing class folder for wnid {w}")
            files = _files_of(d)
            empty += [] if files else [f"{w}/images"]
            paths += files
            targets += [index[w]] * len(files)
        if empty and strict:
            raise _empty_folders(root / "train", empty)
        if empty and paths:  # wnids.txt fixes the classes: an empty one keeps its index, and is named
            logging.getLogger(__name__).warning("%s: %d class folder(s) hold no image: %s (--strict refuses them)",
                                                root / "train", len(empty), _named(empty))
    else:
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DataError(f"{ann}: missing (Tiny-ImageNet validation labels)")
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            if parts[1] not in index:
                raise DataError(f"{ann}: unknown wnid {parts[1]!r} for {parts[0]}")
            paths.append(root / "val" / "images" / parts[0])
            targets.append(index[parts[1]])
    if not paths:
        raise DataError(f"{root}: no Tiny-ImageNet {split} images found")
    return LabeledImages(f"tiny-imagenet:{root}/{split}", wnids, texts, targets,
                         FileImages(paths), FilePaths(paths))


__all__ = ["DataSpec", "LabeledImages", "open_dataset", "first_readable_size", "CorruptImage", "KINDS"]
