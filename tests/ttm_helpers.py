"""Helpers for the TTM tests (relabel, train, evaluate, teachers): tiny image folders and a tiny teacher."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat"]


def shared_dir() -> Path:
    return Path(os.environ.get("D4M_SHARED", REPO.parent / "shared"))


def shared_or_skip(*parts: str) -> Path:
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared asset {path} not available (set D4M_SHARED)")
    return path


def make_folder(root: Path, classes=CLASSES, per_class: int = 3, size: int = 24, seed: int = 0,
                prefix: bool = True) -> Path:
    """An ImageFolder of random PNGs; class i gets a mean brightness that depends on i (so it is learnable)."""
    rng = np.random.default_rng(seed)
    for i, name in enumerate(classes):
        d = Path(root) / (f"{i:03d}_{name}" if prefix else name)
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            base = 40 + 50 * i
            arr = np.clip(rng.normal(base, 30, (size, size + 4 * (j % 2), 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{j:03d}.png")
    return Path(root)


def tiny_teacher_file(path: Path, classes=CLASSES, image_size: int = 16, seed: int = 0) -> Path:
    """A random-weight cifar-resnet20 saved as a d4m checkpoint (safetensors + metadata)."""
    from d4m.models import create_model, save_checkpoint

    torch.manual_seed(seed)
    net = create_model("cifar-resnet20", len(classes), image_size)
    save_checkpoint(path, net, "cifar-resnet20", list(classes), image_size, val_top1=None)
    return Path(path)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a 2-core machine: one intra-op thread is faster and avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def seal_run(run: Path) -> Path:
    """Make a hand-built run look as d4m leaves one: a manifest naming every image (with the sha256 of its bytes)
    and the run marker, so evaluate/report/export accept it."""
    import hashlib
    import json

    from d4m.runio.rundir import MARKER

    rows = []
    for c, folder in enumerate(sorted(p for p in (run / "images").iterdir() if p.is_dir())):
        for f in sorted(folder.iterdir()):
            rows.append({"file": f.relative_to(run).as_posix(), "class_index": c, "class_name": folder.name,
                         "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    (run / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / MARKER).write_text("")
    return run
