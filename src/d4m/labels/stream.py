"""The TTM augmentation stream as pure functions of (seed, epoch, ...).

Per epoch: an image order (permutation) cut into batches; per image a RandomResizedCrop box (torchvision's
algorithm, driven by a generator seeded from ``derive_seed``) and a flip; per batch CutMix or MixUp parameters.
Nothing here depends on batching order, worker count or device, so a stored label file can be replayed exactly
by regenerating the same parameters from the seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from d4m.seeding import derive_seed


@dataclass(frozen=True)
class StreamSpec:
    seed: int = 0
    batch_size: int = 1024
    image_size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    mix: str = "cutmix"  # 'cutmix', 'mixup' or 'none'
    mix_alpha: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"], d["ratio"] = list(self.scale), list(self.ratio)
        return d


@dataclass(frozen=True)
class MixParams:
    kind: str
    lam: float  # weight of the batch itself (after CutMix: the exact uncovered area fraction)
    box: tuple[int, int, int, int]  # CutMix y1, y2, x1, x2 (empty for MixUp / none)
    perm: tuple[int, ...]  # the partner of each batch position


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which the ``n`` images are visited in ``epoch``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "order", epoch)))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The epoch's order cut into batches of ``batch_size`` (the last one may be smaller)."""
    return list(torch.split(epoch_order(n, seed, epoch), max(1, int(batch_size))))


def crop_params(height: int, width: int, seed: int, epoch: int, index: int, scale=(0.08, 1.0),
                ratio=(3 / 4, 4 / 3), flip: bool = True) -> tuple[int, int, int, int, int]:
    """(top, left, h, w, flip) for image ``index`` in ``epoch``: torchvision's RandomResizedCrop.get_params."""
    g = torch.Generator().manual_seed(derive_seed(seed, "crop", epoch, index))
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=g).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=g).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=g).item())
            box = (top, left, h, w)
            break
    if box is None:  # fallback to a central crop, as torchvision does
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    flipped = int(flip and torch.rand(1, generator=g).item() < 0.5)
    return (*box, flipped)


def apply_crop(image: torch.Tensor, params, size: int) -> torch.Tensor:
    """Crop a CxHxW image (uint8 or float) by ``params`` and resize to size x size; float in [0, 1]."""
    top, left, h, w, flipped = (int(p) for p in params)
    x = TF.to_dtype(image, torch.float32, scale=True) if image.dtype == torch.uint8 else image.float()
    x = TF.resized_crop(x, top, left, h, w, [size, size], antialias=True)
    return TF.horizontal_flip(x) if flipped else x


def mix_params(n: int, height: int, width: int, seed: int, epoch: int, batch: int, kind: str = "cutmix",
               alpha: float = 1.0) -> MixParams:
    """CutMix (box from Beta(alpha, alpha)) or MixUp parameters for batch ``batch`` of ``epoch``."""
    if kind == "none" or n < 2:
        return MixParams("none", 1.0, (0, 0, 0, 0), tuple(range(n)))
    rng = np.random.default_rng(derive_seed(seed, "mix", epoch, batch))
    lam = float(rng.beta(alpha, alpha))
    perm = tuple(int(i) for i in rng.permutation(n))
    if kind == "mixup":
        return MixParams("mixup", lam, (0, 0, 0, 0), perm)
    if kind != "cutmix":
        raise ValueError(f"unknown mix kind {kind!r}")
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (height * width)
    return MixParams("cutmix", lam, (y1, y2, x1, x2), perm)


def apply_mix(batch: torch.Tensor, mix: MixParams) -> torch.Tensor:
    """The mixed batch (a new tensor); ``batch`` is NxCxHxW."""
    if mix.kind == "none":
        return batch
    perm = torch.tensor(mix.perm, dtype=torch.long, device=batch.device)
    if mix.kind == "mixup":
        return mix.lam * batch + (1.0 - mix.lam) * batch[perm]
    y1, y2, x1, x2 = mix.box
    out = batch.clone()
    out[:, :, y1:y2, x1:x2] = batch[perm][:, :, y1:y2, x1:x2]
    return out


def params_checksum(indices, crops, mix: MixParams) -> str:
    """A short digest of everything that defines one batch: image indices, crop boxes, flips, mix."""
    h = hashlib.sha256()
    h.update(np.asarray(indices, dtype=np.int64).tobytes())
    h.update(np.asarray(crops, dtype=np.int64).tobytes())
    h.update(repr((mix.kind, round(mix.lam, 12), mix.box, mix.perm)).encode())
    return h.hexdigest()[:16]
