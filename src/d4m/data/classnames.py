"""Class index -> class id -> label text, for the datasets d4m knows, from tables shipped with the package."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from d4m.errors import DataError


def _table(name: str) -> str:
    return resources.files("d4m.data").joinpath("classnames", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def imagenet_table() -> list[tuple[str, str, str]]:
    """1000 rows (wnid, WordNet names, label text) in the standard index order (sorted wnids)."""
    rows = []
    for line in _table("imagenet.tsv").splitlines():
        if not line or line.startswith("#"):
            continue
        idx, wnid, names, label = line.split("\t")
        assert int(idx) == len(rows)
        rows.append((wnid, names, label))
    return rows


@lru_cache(maxsize=None)
def cifar_names(which: str) -> list[str]:
    """CIFAR-10 / CIFAR-100 class names in torchvision's index order (CIFAR-100: alphabetical fine labels)."""
    return _table(f"{which}.txt").split()


def label_text(name: str) -> str:
    """The text a prompt uses for a class id such as 'aquarium_fish' -> 'aquarium fish'.

    A folder name that is not valid UTF-8 (undecodable bytes arrive as surrogates) gets U+FFFD in their place.
    """
    name = str(name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(name.replace("_", " ").split())


def display_name(class_id: str, text: str | None) -> str:
    """'n01443537 goldfish': the class id and its label text's first name, unless the text only repeats the id."""
    text = (text or "").split(",")[0].strip()
    if not text:
        return class_id
    same = " ".join(class_id.lower().replace("_", " ").split()) == " ".join(text.lower().replace("_", " ").split())
    return class_id if same else f"{class_id} {text}"


def known_label_texts(class_ids: list[str]) -> list[str] | None:
    """Label texts for ImageNet wnids (ImageNet, Tiny-ImageNet, their subsets); None when an id is not a wnid."""
    table = {wnid: label for wnid, _, label in imagenet_table()}
    return [table[c] for c in class_ids] if class_ids and all(c in table for c in class_ids) else None


def imagenet_label_texts(wnids: list[str]) -> list[str]:
    """Label texts for ImageNet wnids (any subset, e.g. a user's train folders)."""
    table = {wnid: label for wnid, _, label in imagenet_table()}
    missing = [w for w in wnids if w not in table]
    if missing:
        raise DataError(f"unknown ImageNet-1K wnid {missing[0]!r} (not one of the 1000 ILSVRC-2012 synsets)")
    return [table[w] for w in wnids]


def tiny_imagenet_words(root: Path, wnids: list[str]) -> list[str]:
    """Label texts for Tiny-ImageNet wnids from the dataset's own words.txt (wnid TAB names)."""
    path = Path(root) / "words.txt"
    if not path.is_file():
        raise DataError(f"{path}: missing (Tiny-ImageNet needs words.txt for class names)")
    words = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "\t" in line:
            wnid, names = line.split("\t", 1)
            words[wnid.strip()] = names.strip()
    missing = [w for w in wnids if w not in words]
    if missing:
        raise DataError(f"{path}: no entry for wnid {missing[0]!r}")
    return [words[w] for w in wnids]


def render_prompt(template: str, text: str) -> str:
    """Fill a prompt template such as '{}' (the paper) or 'a photo of a {}'."""
    if "{}" not in template:
        raise DataError(f"prompt template {template!r} has no '{{}}' for the class text")
    return template.replace("{}", text)
