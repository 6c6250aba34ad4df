"""Stream one class's images through the codec in batches, yielding flattened latents."""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2 as T

from d4m.codec.base import Codec
from d4m.data.datasets import LabeledImages
from d4m.data.images import CorruptImage
from d4m.errors import DataError
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)


class SquashedImages(Dataset):
    """Images of ``dataset`` (at ``indices``, or all) squashed to ``size`` x ``size``; files that fail to decode
    come back as zeros with their error, to be skipped and counted."""

    def __init__(self, dataset: LabeledImages, indices: Sequence[int] | None, size: int):
        self.dataset, self.indices = dataset, list(indices) if indices is not None else None
        self.transform = T.Compose([T.ToImage(), T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC,
                                                          antialias=True), T.ToDtype(torch.float32, scale=True)])
        self.size = size

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, j: int):
        i = self.indices[j] if self.indices is not None else j
        try:
            return self.transform(self.dataset.load(i)).clamp(0, 1), i, ""
        except CorruptImage as exc:
            return torch.zeros(3, self.size, self.size), i, str(exc)


class _Batches(Sampler):
    """The batches of the class being encoded; set before each pass (the sampler runs in the main process)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EncodePool:
    """One data loader, and one set of worker processes, for a whole stage: ``batches(indices)`` streams the
    squashed images of any list of dataset indices (a class), in order, in batches of ``batch_size``."""

    def __init__(self, dataset: LabeledImages, size: int, batch_size: int, workers: int):
        self.batch_size = batch_size
        self._sampler = _Batches()
        self.loader = DataLoader(SquashedImages(dataset, None, size), batch_sampler=self._sampler,
                                 num_workers=workers, persistent_workers=workers > 0)

    def batches(self, indices: Sequence[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        indices = list(indices)
        self._sampler.batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        yield from self.loader


def class_latents(dataset: LabeledImages, indices: Sequence[int], codec: Codec, *, class_index: int, seed: int,
                  size: int, batch_size: int, workers: int, strict: bool, skipped: list[str],
                  pool: EncodePool | None = None) -> Iterator[torch.Tensor]:
    """Yield [b, C*h*w] float32 latents of ``indices`` in order; broken files are skipped (or, strict, an error).

    Each latent depends only on (seed, class, dataset index): the posterior noise has its own generator per image.
    ``pool``: the stage's loader (its workers are reused); without it a loader is made for this call.
    """
    pool = pool or EncodePool(dataset, size, batch_size, workers)
    for images, idx, errors in pool.batches(indices):
        ok = [not e for e in errors]
        for e in errors:
            if e:
                if strict:
                    raise DataError(f"{e} (--strict)")
                log.warning("skipping %s", e)
                skipped.append(e.split(": cannot decode")[0])
        if not any(ok):
            continue
        keep = torch.tensor(ok)
        images, idx = images[keep], idx[keep]
        gens = [cpu_generator(seed, "posterior", class_index, int(i)) for i in idx]
        z = codec.encode(images, gens)
        yield z.reshape(z.shape[0], -1).float()


def rebatch(stream: Iterator[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Regroup a stream of [b, d] batches into batches of exactly ``size`` rows (the last may be smaller)."""
    buf: list[torch.Tensor] = []
    held = 0
    for x in stream:
        buf.append(x)
        held += x.shape[0]
        while held >= size:
            cat = torch.cat(buf)
            yield cat[:size]
            rest = cat[size:]
            buf, held = ([rest] if rest.shape[0] else []), rest.shape[0]
    if held:
        yield torch.cat(buf)
