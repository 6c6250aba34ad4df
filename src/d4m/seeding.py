"""Seeds derived from (seed, class, index) so results never depend on batching or process count."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``parts`` (stable across runs and machines)."""
    text = "/".join([str(int(seed))] + [str(p) for p in parts])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def cpu_generator(seed: int, *parts: int | str) -> torch.Generator:
    """A CPU generator seeded from ``derive_seed``; noise is drawn on the CPU so it is device independent."""
    return torch.Generator("cpu").manual_seed(derive_seed(seed, *parts))


def randn(shape, generator: torch.Generator, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU with ``generator`` then moved to ``device``."""
    out = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    return out.to(device=device or "cpu", dtype=dtype)
