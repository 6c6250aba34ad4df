"""Codecs: the autoencoder between images and the generator's latent space.

``build_codec(spec, model=...)`` understands: ``model`` (the diffusion model's own VAE, ``<model>/vae``),
``vae:PATH_OR_HUB_ID`` (any AutoencoderKL folder), ``taef2:DIR`` (the TAEF2 tiny autoencoder).
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
        from d4m.codec.vae import VAECodec

        return VAECodec(model, subfolder="vae", device=device, dtype=dtype, posterior=posterior)
    if kind == "vae":
        if not arg:
            raise ConfigError("--codec vae:PATH needs a path or hub id")
        from d4m.codec.vae import VAECodec

        return VAECodec(arg, subfolder=None, device=device, dtype=dtype, posterior=posterior)
    if kind == "taef2":
        if not arg:
            raise ConfigError("--codec taef2:DIR needs the folder holding taef2_encoder.pth / taef2_decoder.pth")
        from d4m.codec.taef2 import TAEF2Codec

        return TAEF2Codec(arg, device=device, dtype=dtype)
    raise ConfigError(f"--codec {spec!r}: unknown codec (one of: model, vae:PATH, taef2:DIR)")


__all__ = ["Codec", "build_codec", "CODEC_KINDS", "ModelError"]
