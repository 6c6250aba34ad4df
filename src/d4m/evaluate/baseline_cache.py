"""A shared cache of the card's random-real baseline, so several cards on one dataset train it once.

The baseline (students trained with the teacher's soft labels on a seeded random real subset) depends only on the
image set (real training data, images per class, image size, subset seed), the student, the recipe, the teacher,
the seeds and the validation set: not on the distilled images being judged. Its run directory is therefore
``<cache>/card-random/<key>/`` with ``key`` a hash of exactly those, ``key.json`` beside it saying what went in,
and a finished evaluation's ``summary.json`` is reused as it is.

``<cache>`` is ``$D4M_CACHE`` when set, else ``~/.cache/d4m``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from d4m.data import DataSpec
from d4m.runio import atomic_write_text, sha256_file
from d4m.runio.rundir import RunDir


def cache_root() -> Path:
    return Path(os.environ.get("D4M_CACHE") or Path.home() / ".cache" / "d4m").expanduser()


def _data(spec: str) -> str:
    """A data spec with its path made absolute, so 'cifar10:~/data' and 'cifar10:/home/me/data' are one key."""
    parsed = DataSpec.parse(spec)
    return f"{parsed.kind}:{parsed.root.resolve()}"


def _teacher(spec: str) -> dict:
    """The teacher spec, and the content hash of its weights file when it names one (a retrained file is new)."""
    kind, _, value = str(spec).partition(":")
    path = Path(value).expanduser()
    if kind != "torchvision" and path.is_file():
        return {"kind": kind, "sha256": sha256_file(path)}
    return {"spec": str(spec)}


def baseline_key(job, train_data: str, ipc: int, size: int, subset_seed: int = 0) -> dict:
    """What the baseline's accuracy depends on (JSON-able); ``job`` is the card's ``EvalJob``."""
    return {"format": "d4m.card-random/1", "train_data": _data(train_data), "ipc": int(ipc), "size": int(size),
            "subset_seed": int(subset_seed), "student": job.student, "recipe": job.recipe.to_dict(),
            "teacher": _teacher(job.teacher), "seeds": int(job.seeds), "val": _data(job.val),
            "val_limit": job.val_limit, "image_size": job.size, "labels": job.labels,
            "label_format": job.label_format, "topk": job.topk}


def baseline_dir(job, train_data: str, ipc: int, size: int, subset_seed: int = 0) -> Path:
    """The baseline's run directory in the cache (created, with key.json); the same key gives the same folder."""
    key = baseline_key(job, train_data, ipc, size, subset_seed)
    text = json.dumps(key, sort_keys=True, indent=2)
    out = cache_root() / "card-random" / f"ipc{ipc}-{size}px-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    out.mkdir(parents=True, exist_ok=True)
    marker = RunDir(out).marker
    if not marker.is_file():  # d4m's own cache folder: mark it as a run directory before anything else is in it
        atomic_write_text(marker, "d4m run directory (the card's random-baseline cache)\n")
    if not (out / "key.json").is_file():
        atomic_write_text(out / "key.json", text + "\n")
    return out


def cached_summary(base: Path, job) -> dict | None:
    """The finished evaluation summary of the baseline in ``base`` (all seeds done), or None."""
    path = Path(base) / "eval" / job.student / job.recipe.name / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    return summary if summary.get("last_epoch_top1", {}).get("n") == job.seeds else None
