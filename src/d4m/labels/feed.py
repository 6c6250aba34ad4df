"""Feeding the stream: load distilled images, crop them by the stream's parameters, mix each batch.

``StreamImages[(epoch, index)]`` returns the cropped image, so a DataLoader with any number of workers yields the
same tensors; ``iterate_epoch`` yields one ``Batch`` per stream batch, identical for relabelling and training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from d4m.labels.stream import (MixParams, StreamSpec, apply_crop, apply_mix, crop_params, epoch_batches,
                               mix_params, params_checksum)


@dataclass
class Batch:
    number: int
    images: torch.Tensor  # mixed, float in [0, 1], N x C x S x S
    indices: torch.Tensor  # dataset indices (targets = dataset.targets[indices])
    crops: torch.Tensor  # N x 5 (top, left, h, w, flip)
    mix: MixParams
    checksum: str


class StreamImages(torch.utils.data.Dataset):
    """Items keyed by (epoch, index): the stream's crop of image ``index`` for ``epoch``."""

    def __init__(self, images, spec: StreamSpec, cache: bool = True):
        self.images, self.spec, self.cache = images, spec, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.images)

    def raw(self, index: int) -> torch.Tensor:
        if index in self._cache:
            return self._cache[index]
        x = TF.pil_to_tensor(self.images.load(index))
        if self.cache:
            self._cache[index] = x
        return x

    def __getitem__(self, key):
        epoch, index = key
        x = self.raw(index)
        s = self.spec
        params = crop_params(x.shape[-2], x.shape[-1], s.seed, epoch, index, s.scale, s.ratio, s.flip)
        return apply_crop(x, params, s.image_size), index, torch.tensor(params, dtype=torch.long)


class _EpochSampler(torch.utils.data.Sampler):
    def __init__(self, batches: list[torch.Tensor], epoch: int):
        self.batches, self.epoch = batches, epoch

    def __iter__(self):
        for b in self.batches:
            yield [(self.epoch, int(i)) for i in b]

    def __len__(self) -> int:
        return len(self.batches)


def num_batches(n: int, spec: StreamSpec) -> int:
    return -(-n // max(1, spec.batch_size))


def iterate_epoch(data: StreamImages, epoch: int, workers: int = 0, start_batch: int = 0):
    """Yield the epoch's ``Batch``es in stream order (from ``start_batch``)."""
    s = data.spec
    batches = epoch_batches(len(data), s.batch_size, s.seed, epoch)[start_batch:]
    loader = torch.utils.data.DataLoader(data, batch_sampler=_EpochSampler(batches, epoch), num_workers=workers,
                                         persistent_workers=False)
    for k, (images, indices, crops) in enumerate(loader, start=start_batch):
        mix = mix_params(len(indices), s.image_size, s.image_size, s.seed, epoch, k, s.mix, s.mix_alpha)
        yield Batch(k, apply_mix(images, mix), indices, crops, mix, params_checksum(indices, crops, mix))
