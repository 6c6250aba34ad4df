"""Write a trained generator as a diffusers-format folder that ``d4m distill --model`` loads unchanged.

``unet/`` (EMA weights), ``scheduler/`` (DDIM, the default sampler), ``text_encoder/`` and ``tokenizer/`` (padding
to a few tokens), and ``d4m.json``: the latent scale synthesis applies, the codec, size, classes and label texts,
whether the text encoder takes an attention mask, and the training configuration and progress.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from d4m.errors import ModelError
from d4m.runio.atomic import atomic_write_text


def _replace_dir(build, target: Path) -> None:
    """Build a folder beside ``target`` with ``build(path)``, then swap it in (a reader never sees half a folder)."""
    new, old = target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")
    for p in (new, old):
        if p.exists():
            shutil.rmtree(p)
    build(new)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def export_generator(out: Path, unet, sampler, text, info: dict, named: bool = False) -> None:
    """Save every component of the model into ``out``; the text encoder and tokenizer only once, and only when
    ``d4m.json`` cannot name them (``named``: ``clip`` or ``minilm``, loaded by that name at synthesis; never for an
    ``EmbeddingTable``, which has no weights: ``TextEncoder.save`` adds them later)."""
    out = Path(out)
    _replace_dir(lambda p: unet.save_pretrained(p), out / "unet")
    _replace_dir(lambda p: sampler.save_pretrained(p), out / "scheduler")
    missing = not (out / "text_encoder").is_dir() or not (out / "tokenizer").is_dir()
    if text.model is not None and not named and missing:
        _replace_dir(lambda p: text.model.save_pretrained(p), out / "text_encoder")
        _replace_dir(lambda p: text.tokenizer.save_pretrained(p), out / "tokenizer")
    atomic_write_text(out / "d4m.json", json.dumps(info, indent=1) + "\n")


def read_info(model: str | Path) -> dict:
    path = Path(model).expanduser() / "d4m.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ModelError(f"{path}: not valid JSON") from None
