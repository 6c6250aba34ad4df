"""safetensors files with d4m metadata, written byte-for-byte reproducibly.

safetensors serialises a metadata dict in a per-process random order (a Rust HashMap), so two identical runs
would write different bytes. d4m therefore stores its metadata as ONE key, ``d4m``, holding sorted-key JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from d4m.errors import D4MError
from d4m.runio.atomic import atomic_write_bytes

KEY = "d4m"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` (made contiguous, on the CPU) with JSON-able ``meta``."""
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), save(data, metadata={KEY: json.dumps(meta, sort_keys=True)}))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of a file written by ``save_tensors``; a broken file is an error naming it."""
    path = Path(path)
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as fh:
            raw = (fh.metadata() or {}).get(KEY, "{}")
    except (SafetensorError, OSError, ValueError) as exc:
        raise D4MError(f"{path}: cannot read safetensors file ({exc})") from None
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise D4MError(f"{path}: its d4m metadata is not a JSON object (a damaged or foreign file)")
    return tensors, meta
