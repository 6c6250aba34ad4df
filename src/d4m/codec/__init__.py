"""Codecs: the autoencoder between images and the generator's latent space.

``build_codec(spec, model=...)`` understands: ``model`` (the diffusion model's own VAE, ``<model>/vae``),
``vae:PATH_OR_HUB_ID`` (any AutoencoderKL folder), ``taef2:DIR`` (the TAEF2 tiny autoencoder from a folder) and
``taef2`` (the same weights by name: fetched once into torch's hub cache with a checksum, ``d4m.codec.taef2_fetch``).
"""

from __future__ import annotations

import torch

from d4m.codec.base import Codec
from d4m.errors import ConfigError, ModelError

CODEC_KINDS = ("model", "vae", "taef2")


def build_codec(spec: str, model: str | None = None, device="cpu", dtype=torch.float32,
                posterior: str = "sample") -> Codec:
    kind, _, arg = str(spec).partition(":")
    if kind == "model":
        if not model:
            raise ConfigError("--codec model needs --model (the diffusion model whose VAE encodes the images)")
        own = _model_codec(model)
        if own:  # a generator trained by d4m names the codec it was trained on
            return build_codec(own, None, device=device, dtype=dtype, posterior=posterior)
        from d4m.codec.vae import VAECodec

        return VAECodec(model, subfolder="vae", device=device, dtype=dtype, posterior=posterior)
    if kind == "vae":
        if not arg:
            raise ConfigError("--codec vae:PATH needs a path or hub id")
        from d4m.codec.vae import VAECodec

        return VAECodec(arg, subfolder=None, device=device, dtype=dtype, posterior=posterior)
    if kind == "taef2":
        from d4m.codec.taef2 import TAEF2Codec

        if not arg:  # by name: the published files, from the hub cache (downloaded and checked on first use)
            from d4m.codec.taef2_fetch import fetch_taef2

            return TAEF2Codec(fetch_taef2(), device=device, dtype=dtype, name="taef2")
        return TAEF2Codec(arg, device=device, dtype=dtype)
    raise ConfigError(f"--codec {spec!r}: unknown codec (one of: model, vae:PATH, taef2, taef2:DIR)")


def _model_codec(model: str) -> str | None:
    """The codec named in MODEL/d4m.json when the model has no vae/ of its own."""
    from pathlib import Path

    from d4m.generators import resolve_model
    from d4m.runio.textfiles import read_json

    folder = Path(resolve_model(model)).expanduser()
    info = folder / "d4m.json"
    if folder.is_dir() and not (folder / "vae").is_dir() and info.is_file():
        codec = read_json(info, "d4m.json").get("codec")
        if isinstance(codec, str) and codec and not codec.startswith("model"):
            return str(codec)
    return None


__all__ = ["Codec", "build_codec", "CODEC_KINDS", "ModelError"]
