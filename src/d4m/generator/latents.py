"""Encode a dataset once into codec latents (both horizontal flips), cached in the work folder ``OUT.work/``.

Images are squashed to ``size`` x ``size`` exactly as the prototype stage does, so the generator learns the latent
distribution that ``d4m distill`` later feeds it. Encoding is chunked: each chunk of images is written atomically
to ``latents/part-XXXXX.safetensors`` there, so a killed run resumes at the next chunk; the parts are then joined
into ``latents.safetensors``: ``latents`` [N, 2, C, h, w] (unflipped, flipped) and ``targets`` [N].
The folder may be shared by several runs (``--latent-cache``): the file records what it was encoded from (data,
codec, size, subset, seed) and a run with other inputs is refused rather than fed the wrong latents.

The UNet sees normalised latents: per channel ``(z - mean) / std`` with the statistics of the training latents
(``channel_stats``), or the older single global scale (``latent_scale``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from d4m.codec.base import Codec
from d4m.data.datasets import LabeledImages
from d4m.prototypes.cache import file_stats
from d4m.prototypes.encode import SquashedImages
from d4m.errors import DataError
from d4m.runio.atomic import atomic_write_bytes
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)
CHUNK = 256


def select_indices(dataset: LabeledImages, max_per_class: int | None, seed: int) -> list[int]:
    """All dataset indices, or a seeded subset of at most ``max_per_class`` per class (sorted)."""
    if not max_per_class:
        return list(range(len(dataset)))
    out: list[int] = []
    for c in range(len(dataset.classes)):
        idx = dataset.indices_of(c)
        order = torch.randperm(len(idx), generator=cpu_generator(seed, "generator-subset", c)).tolist()
        out += [idx[j] for j in order[:max_per_class]]
    return sorted(out)


def _encode_chunk(dataset, indices, codec: Codec, size: int, batch_size: int, workers: int, seed: int, bar):
    lat, tgt, kept = [], [], []
    loader = DataLoader(SquashedImages(dataset, indices, size), batch_size=batch_size, num_workers=workers)
    for images, idx, errors in loader:
        keep = torch.tensor([not e for e in errors])
        for e in errors:
            if e:
                log.warning("skipping %s", e)
        bar.update(len(idx))
        if not keep.any():
            continue
        images, idx = images[keep], idx[keep]
        pair = []
        for flip in (False, True):
            gens = [cpu_generator(seed, "generator-posterior", int(i), int(flip)) for i in idx]
            pair.append(codec.encode(images.flip(-1) if flip else images, gens).float().cpu())
        lat.append(torch.stack(pair, 1))
        tgt += [dataset.targets[int(i)] for i in idx]
        kept += [int(i) for i in idx]
    if not lat:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(lat), torch.tensor(tgt, dtype=torch.long), torch.tensor(kept, dtype=torch.long)


def encode_dataset(dataset: LabeledImages, indices: list[int], codec: Codec, work: Path, *, size: int,
                   batch_size: int = 64, workers: int = 0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached (latents [N, 2, C, h, w], targets [N]) of ``indices``; encodes only what is not cached yet."""
    key = {"data": dataset.name, "codec": codec.name, "size": size, "n": len(indices), "seed": seed,
           "first": indices[:3], "last": indices[-3:]}
    final = Path(work) / "latents.safetensors"
    if final.is_file():
        with safe_open(final, "pt") as fh:
            meta = fh.metadata() or {}
        if json.loads(meta.get("key", "{}")) == key:
            t = load_file(final)
            return t["latents"], t["targets"]
        raise DataError(f"{final} was encoded from other data/codec/size ({meta.get('key')}); "
                        "use a new --out or delete that file")
    parts = Path(work) / "latents"
    chunks = [indices[i : i + CHUNK] for i in range(0, len(indices), CHUNK)]
    lats, tgts, kept = [], [], []
    bar = tqdm(total=len(indices), desc="encode latents", unit="img")
    for n, chunk in enumerate(chunks):
        path = parts / f"part-{n:05d}.safetensors"
        meta = {"key": json.dumps(key), "chunk": str(n)}
        if path.is_file():
            with safe_open(path, "pt") as fh:
                ok = (fh.metadata() or {}) == meta
            if ok:
                t = load_file(path)
                lats.append(t["latents"]), tgts.append(t["targets"]), kept.append(t.get("indices"))
                bar.update(len(chunk))
                continue
        lat, tgt, idx = _encode_chunk(dataset, chunk, codec, size, batch_size, workers, seed, bar)
        atomic_write_bytes(path, save({"latents": lat.contiguous(), "targets": tgt, "indices": idx}, metadata=meta))
        lats.append(lat), tgts.append(tgt), kept.append(idx)
    bar.close()
    lats = [x for x in lats if x.numel()]
    if not lats:
        raise DataError(f"--data {dataset.name}: no readable images to encode")
    latents, targets = torch.cat(lats), torch.cat(tgts)
    tensors = {"latents": latents.contiguous(), "targets": targets.contiguous()}
    if all(k is not None for k in kept):  # which image each row is, and its file then: distill may reuse them
        rows = torch.cat(kept)
        tensors.update(indices=rows, stats=file_stats(dataset, rows.tolist()))
    atomic_write_bytes(final, save(tensors, metadata={"key": json.dumps(key)}))
    for p in parts.glob("part-*.safetensors"):
        p.unlink()
    return latents, targets


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of all latent values: the factor that brings the data to unit variance, as SD's 0.18215 does."""
    std = float(latents.float().std())
    if not std > 0:
        raise DataError("the encoded latents have zero variance (blank images?)")
    return 1.0 / std


def channel_stats(latents: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of latents [N, 2, C, h, w] (over images, flips and positions)."""
    x = latents.float().transpose(0, 2).reshape(latents.shape[2], -1)
    mean, std = x.mean(1), x.std(1)
    if not bool((std > 0).all()):
        raise DataError("some latent channels have zero variance (blank images?)")
    return mean.tolist(), std.tolist()
