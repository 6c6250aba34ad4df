"""Latents a d4m generator's training already encoded, reused by the prototype stage instead of encoding again.

``d4m generator train`` keeps ``latents.safetensors`` (its work folder, named in the model's ``d4m.json`` as
``latents``): every training image's codec latent with its dataset index and its file's size and mtime at the
time. ``distill --model GEN`` on the same data, codec and size takes a class's latents from there when every image
of the class is in it and no file changed since; otherwise that class is encoded as usual (a changed file is named
in the log). Only a deterministic codec (TAEF2) qualifies: a VAE's latents are posterior samples drawn with other
seeds than the prototype stage draws.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open

from d4m.codec.base import Codec
from d4m.data.datasets import LabeledImages

log = logging.getLogger(__name__)


def file_stats(dataset: LabeledImages, indices) -> torch.Tensor:
    """[n, 2] int64 (size in bytes, mtime in ns) of each image's file; -1 where an item is not a file."""
    rows = []
    for i in indices:
        path = Path(dataset.describe(int(i)))
        st = path.stat() if path.is_file() else None
        rows.append((st.st_size, st.st_mtime_ns) if st else (-1, -1))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)


class EncodedLatents:
    def __init__(self, path: Path, dataset: LabeledImages, latents: torch.Tensor, indices: list[int],
                 stats: torch.Tensor):
        self.path, self.dataset, self.latents, self.stats = path, dataset, latents, stats
        self.row = {i: r for r, i in enumerate(indices)}

    @classmethod
    def find(cls, model: str, dataset: LabeledImages, codec: Codec, size: int) -> "EncodedLatents | None":
        """The generator's encoded latents when they are what this stage would compute, else None."""
        from d4m.synthesis.generator import model_info

        path = model_info(model).get("latents") if Path(str(model)).expanduser().is_dir() else None
        if not path or not Path(path).is_file() or not codec.name.startswith("taef2:"):
            return None
        with safe_open(path, "pt") as fh:
            key = json.loads((fh.metadata() or {}).get("key", "{}"))
            names = set(fh.keys())
        if {"indices", "stats"} - names or key.get("data") != dataset.name or key.get("codec") != codec.name \
                or key.get("size") != size:
            return None
        with safe_open(path, "pt") as fh:  # the unflipped half only
            latents = fh.get_slice("latents")[:, 0:1].squeeze(1)
            indices, stats = fh.get_tensor("indices").tolist(), fh.get_tensor("stats")
        log.info("prototypes: the latents in %s are reused where its images are unchanged", path)
        return cls(Path(path), dataset, latents, indices, stats)

    def rows(self, indices: list[int]) -> torch.Tensor | None:
        """[n, C*h*w] latents of ``indices`` in order, or None when one is missing or its file changed."""
        rows = [self.row.get(int(i)) for i in indices]
        if any(r is None for r in rows):
            return None
        now = file_stats(self.dataset, indices)
        changed = (now != self.stats[rows]).any(1) | (now < 0).any(1)
        if bool(changed.any()):
            first = indices[int(changed.nonzero()[0])]
            log.info("prototypes: %s changed since the generator encoded it: encoding its class again",
                     self.dataset.describe(first))
            return None
        return self.latents[rows].reshape(len(rows), -1).float()
