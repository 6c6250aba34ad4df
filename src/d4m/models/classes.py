"""Class-order check between a teacher's output head and a dataset's classes."""

from __future__ import annotations

import re
from functools import lru_cache

from d4m.errors import ModelError

_WNID = re.compile(r"^n\d{8}$")
_PREFIX = re.compile(r"^\d+[_-]")  # d4m run folders are NNN_<class>


def normalise(name: str) -> str:
    """Lowercase, '_' and ' ' equivalent, a leading 'NNN_' index prefix dropped."""
    name = _PREFIX.sub("", str(name).strip())
    return " ".join(name.lower().replace("_", " ").split())


@lru_cache(maxsize=None)
def _wnid_aliases() -> dict[str, set[str]]:
    from d4m.data.classnames import imagenet_table

    try:
        from torchvision.models import ResNet18_Weights
        categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    except Exception:  # older torchvision: fall back on the WordNet names only
        categories = [None] * 1000
    out = {}
    for i, (wnid, names, label) in enumerate(imagenet_table()):
        aliases = {wnid, normalise(label)} | {normalise(n) for n in names.split(",")}
        if categories[i]:
            aliases.add(normalise(categories[i]))
        out[wnid] = aliases
    return out


def aliases(name: str) -> set[str]:
    """Every spelling ``name`` may match: itself normalised, and for an ImageNet wnid its names."""
    key = _PREFIX.sub("", str(name).strip())
    if _WNID.match(key):
        return _wnid_aliases().get(key, {key})
    return {normalise(name)}


def same_class(a: str, b: str) -> bool:
    if _WNID.match(_PREFIX.sub("", a)) and _WNID.match(_PREFIX.sub("", b)):
        return _PREFIX.sub("", a) == _PREFIX.sub("", b)
    return bool(aliases(a) & aliases(b))


def class_columns(teacher_classes: list[str], data_classes: list[str], teacher: str = "teacher",
                  data: str = "the data", model: str = "the teacher") -> list[int] | None:
    """Teacher output columns for the data's classes in data order; None when they are the same order.

    Same length: the orders must agree position by position. A teacher with more classes (e.g. an ImageNet head on
    a Tiny-ImageNet subset) is reduced to the data's classes when each one is found. Raises ModelError naming the
    first mismatch; ``teacher`` prefixes the message, ``model`` and ``data`` name the two sides (e.g. "the
    distilled images" and "the val set"), so the message says which one is wrong.
    """
    if len(teacher_classes) == len(data_classes):
        for i, (t, d) in enumerate(zip(teacher_classes, data_classes)):
            if not same_class(t, d):
                raise ModelError(f"{teacher}: class order mismatch at index {i}: {model} has {t!r}, {data} has "
                                 f"{d!r}")
        return None
    columns = []
    for i, d in enumerate(data_classes):
        hits = [j for j, t in enumerate(teacher_classes) if same_class(t, d)]
        if len(hits) != 1:
            what = "not found" if not hits else "ambiguous"
            raise ModelError(f"{teacher}: class {i} {d!r} of {data} {what} among the {len(teacher_classes)} classes "
                             f"of {model} ({data} has {len(data_classes)})")
        columns.append(hits[0])
    return columns
