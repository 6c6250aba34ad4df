"""Stream one class's images through the codec in batches, yielding flattened latents."""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

from d4m.codec.base import Codec
from d4m.data.datasets import LabeledImages
from d4m.data.images import CorruptImage
from d4m.errors import DataError
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)


class SquashedImages(Dataset):
    """Images of ``dataset`` at ``indices`` squashed to ``size`` x ``size``, flagging files that fail to decode."""

    def __init__(self, dataset: LabeledImages, indices: Sequence[int], size: int):
        self.dataset, self.indices = dataset, list(indices)
        self.transform = T.Compose([T.ToImage(), T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC,
                                                          antialias=True), T.ToDtype(torch.float32, scale=True)])
        self.size = size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            return self.transform(self.dataset.load(i)).clamp(0, 1), i, ""
        except CorruptImage as exc:
            return torch.zeros(3, self.size, self.size), i, str(exc)


def class_latents(dataset: LabeledImages, indices: Sequence[int], codec: Codec, *, class_index: int, seed: int,
                  size: int, batch_size: int, workers: int, strict: bool, skipped: list[str]) -> Iterator[torch.Tensor]:
    """Yield [b, C*h*w] float32 latents of ``indices`` in order; broken files are skipped (or, strict, an error).

    Each latent depends only on (seed, class, dataset index): the posterior noise has its own generator per image.
    """
    loader = DataLoader(SquashedImages(dataset, indices, size), batch_size=batch_size, shuffle=False,
                        num_workers=workers, persistent_workers=False)
    for images, idx, errors in loader:
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
