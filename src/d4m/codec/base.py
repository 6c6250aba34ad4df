"""The codec interface: images in [0, 1] <-> latents in the generator's latent space.

A codec is a small class: ``encode`` (optionally stochastic, one CPU generator per image so a latent never
depends on its batch), ``decode``, and the facts other stages check (latent channels, downsampling factor).
"""

from __future__ import annotations

from typing import Sequence

import torch


class Codec:
    name: str = "codec"
    latent_channels: int = 4
    downsample: int = 8

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype

    def encode(self, images: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, C, H/f, W/f] latents (float32, on ``self.device``)."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] latents -> [B, 3, h*f, w*f] images in [0, 1] (float32)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What a run records about this codec."""
        return {"codec": self.name, "latent_channels": self.latent_channels, "downsample": self.downsample}
