"""Size bounds of ``teacher train``, ``relabel`` and ``evaluate``, checked before anything is allocated.

As ``generator train``'s (``d4m.generator.config``), the memory estimates are generous bounds for the absurd, not
predictions: a classifier's peak training activations are taken as ``ACTIVATIONS`` times its float32 input, a
model's bytes as four times its weights (weights, gradients, two optimizer moments). What lives on the device
(the model, the batch going through it) is compared with the free memory of a CUDA device when the work runs on
one, else with the host's. Each refusal is one ``ConfigError`` line naming the flag, the estimate and the memory
(or disk) this machine has.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from d4m.checks import amount, at_most, fits, on_device
from d4m.errors import ConfigError
from d4m.models.registry import MAX_IMAGE_SIZE as MAX_SIZE, weight_count

ACTIVATIONS = 64
MAX_BATCH = 100_000
MAX_SEEDS = 10_000


def image_size(flag: str, size) -> None:
    """An image side in [8, MAX_SIZE] pixels."""
    at_most(flag, size, MAX_SIZE)
    if size < 8:
        raise ConfigError(f"{flag} {size}: too small (>= 8)")


def model_fits(flag: str, arch: str, classes: int, size: int, what: str, device: str = "cpu") -> int:
    """Refuse a model whose weights, gradients and optimizer state would not fit; return its weight count."""
    n = weight_count(arch, classes, size)
    on_device(flag, 4 * 4 * n, f"{what} ({arch}, {classes:,} classes, {size} px: {n:,} weights, trained)", device)
    return n


def training_batch(flag: str, stream: int, micro: int, size: int, device: str = "cpu") -> None:
    """A stream batch of ``stream`` images in memory (float32, on the host) and ``micro`` of them through the
    model at a time (on the device)."""
    per_image = 3 * 4 * size * size
    what = f"a training batch of {stream:,} images at {size} px, {micro:,} at a time through the model"
    if str(device).startswith("cuda"):
        fits(flag, stream * per_image, f"a training batch of {stream:,} images at {size} px")
        on_device(flag, micro * per_image * (1 + ACTIVATIONS), what, device)
    else:
        fits(flag, stream * per_image + micro * per_image * ACTIVATIONS, what)


def val_batch(flag: str, size: int, device: str = "cpu", batch: int = 256) -> None:
    """A batch of the real val set (``ValSet.predict``'s 256) through a model without gradients."""
    on_device(flag, batch * 3 * size * size * (1 + 4 + 4 * ACTIVATIONS // 8),
              f"testing {batch} val images at a time at {size} px", device)


def images_in_memory(flag: str, count: int, side: int) -> None:
    """The distilled images, kept decoded (uint8) for the whole run by the stream."""
    fits(flag, count * 3 * side * side, f"holding its {count:,} images of {side} px decoded")


def label_bytes(classes: int, fmt: str, k: int) -> int:
    """Bytes per image and epoch of the stored labels (``d4m.labels.store.encode``)."""
    if fmt == "topk" and 0 < k < classes:
        return k * (2 + (2 if classes <= 32767 else 4)) + 2
    return classes * (4 if fmt == "fp32" else 2)


def free_disk(path: Path) -> int:
    """Bytes free on the disk that holds ``path`` (its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62  # unknown: the memory bound still applies


def label_store(root: Path, images: int, epochs: int, classes: int, fmt: str, k: int) -> None:
    """``epochs`` new epochs of soft labels: one epoch's logits in memory (float32, and their encoding), the
    store on disk (images x epochs x classes x bytes)."""
    fits(f"--teacher ({classes:,} classes)", images * classes * (4 + 4),
         f"one epoch of soft labels ({images:,} images x {classes:,} classes, float32)")
    need, have = images * epochs * label_bytes(classes, fmt, k), free_disk(root)
    if need > have:
        kind = f"top-{k}" if fmt == "topk" and k else fmt
        raise ConfigError(f"--epochs {epochs}: the stored labels need about {amount(need)} ({images:,} images x "
                          f"{epochs:,} epochs x {label_bytes(classes, fmt, k):,} bytes of {kind} logits), more than "
                          f"the {amount(have)} free under {root}; --topk K or --labels online store less")
