"""The real validation set at the student's resolution, and top-1 accuracy on it."""

from __future__ import annotations

import torch
from torchvision.transforms import v2
from tqdm import tqdm

from d4m.checks import whole
from d4m.data import DataSpec, open_dataset
from d4m.errors import ConfigError
from d4m.seeding import derive_seed

DEFAULT_SIZE = {"cifar10": 32, "cifar100": 32, "tiny-imagenet": 64, "imagenet": 224}
CACHE_LIMIT_BYTES = 2 << 30


def default_image_size(val_spec: str, size: int | None = None, strict: bool = False) -> int:
    """--size, else the dataset's resolution (cifar 32, tiny 64, imagenet 224, folder: its first image)."""
    if size:
        if size < 8:
            raise ConfigError(f"--size {size}: too small (>= 8)")
        return int(size)
    spec = DataSpec.parse(val_spec)
    if spec.kind in DEFAULT_SIZE:
        return DEFAULT_SIZE[spec.kind]
    from d4m.data.datasets import first_readable_size

    return int(first_readable_size(open_dataset(spec, "train", strict=strict)))  # a folder has no split: all is val


def val_transform(kind: str, size: int):
    """ImageNet: Resize(size * 256 / 224) + CenterCrop(size); others: Resize(size) + CenterCrop(size). uint8 out."""
    resize = round(size * 256 / 224) if kind == "imagenet" else size
    return v2.Compose([v2.PILToTensor(), v2.Resize(resize, antialias=True), v2.CenterCrop(size)])


class ValSet:
    """Validation images (uint8, cached in memory when small) with targets; ``limit`` picks a seeded subset."""

    def __init__(self, val_spec: str, size: int, limit: int | None = None, workers: int = 0, seed: int = 0,
                 indices: list[int] | None = None, split: str | None = None, strict: bool = False):
        """``indices`` (of the split, before ``limit``) restricts the set, e.g. to a held-out part of a folder;
        ``split`` overrides the split (default: 'val', or the whole folder for ``folder:``); ``strict``: a class
        folder without images is an error."""
        whole("--limit", limit, 1, optional=True)
        whole("--workers", workers, 0)
        spec = DataSpec.parse(val_spec)
        split = split or ("train" if spec.kind == "folder" else "val")
        self.dataset = open_dataset(spec, split, transform=val_transform(spec.kind, size), strict=strict)
        self.classes, self.size, self.workers = self.dataset.classes, size, workers
        pool = list(range(len(self.dataset))) if indices is None else sorted(indices)
        n = len(pool)
        if limit and limit < n:
            g = torch.Generator().manual_seed(derive_seed(seed, "val-subset"))
            self.indices = [pool[i] for i in torch.randperm(n, generator=g)[:limit].sort().values.tolist()]
        else:
            self.indices = pool
        self.targets = torch.tensor([self.dataset.targets[i] for i in self.indices])
        self.cached = None
        if len(self.indices) * 3 * size * size <= CACHE_LIMIT_BYTES:
            self.cached = torch.cat([x for x, _ in self._batches(256, "load val")])

    def __len__(self) -> int:
        return len(self.indices)

    def _batches(self, batch_size: int, desc: str):
        subset = torch.utils.data.Subset(self.dataset, self.indices)
        loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=self.workers)
        yield from tqdm(loader, desc=desc, unit="batch", leave=False)

    def batches(self, batch_size: int = 256):
        if self.cached is not None:
            for s in range(0, len(self), batch_size):
                yield self.cached[s:s + batch_size], self.targets[s:s + batch_size]
        else:
            yield from self._batches(batch_size, "val")

    @torch.no_grad()
    def predict(self, model, device: str = "cpu", batch_size: int = 256, columns: list[int] | None = None,
                desc: str | None = None) -> torch.Tensor:
        """The predicted class index of every image (``model`` takes images in [0, 1]); ``desc``: a progress bar."""
        was_training = isinstance(model, torch.nn.Module) and model.training
        if was_training:
            model.eval()
        out = []
        batches = self.batches(batch_size)
        if desc is not None:
            batches = tqdm(batches, desc=desc, unit="batch", total=-(-len(self) // batch_size), leave=False)
        for x, _ in batches:
            logits = model(x.to(device).float().div_(255))
            if columns is not None:
                logits = logits[:, columns]
            out.append(logits.argmax(1).cpu())
        if was_training:
            model.train()
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def top1(self, model, device: str = "cpu", batch_size: int = 256, columns: list[int] | None = None) -> float:
        """Top-1 accuracy in percent of ``model`` (taking images in [0, 1])."""
        correct = int((self.predict(model, device, batch_size, columns) == self.targets).sum())
        return round(100.0 * correct / max(1, len(self)), 2)
