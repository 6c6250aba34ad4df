"""The diffusion model's own VAE (diffusers AutoencoderKL), loaded with ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from d4m.codec.base import Codec
from d4m.errors import ModelError
from d4m.pretrained import load_component
from d4m.seeding import randn


class VAECodec(Codec):
    """latent = scaling_factor * (posterior sample - shift); SD v1.5: 0.18215 * sample, 4 x H/8 x W/8."""

    def __init__(self, source: str, subfolder: str | None = "vae", device="cpu", dtype=torch.float32,
                 posterior: str = "sample"):
        super().__init__(device, dtype)
        from diffusers import AutoencoderKL

        if posterior not in ("sample", "mean"):
            raise ModelError(f"--posterior {posterior!r}: expected 'sample' or 'mean'")
        self.posterior = posterior
        self.source = str(source)
        self.vae = load_component(AutoencoderKL.from_pretrained, self.source, subfolder, "VAE (AutoencoderKL)",
                                  library="diffusers", torch_dtype=dtype)
        self.vae.to(self.device).eval().requires_grad_(False)
        cfg = self.vae.config
        self.scaling_factor = float(getattr(cfg, "scaling_factor", 0.18215) or 0.18215)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.latent_channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.name = f"vae:{self.source}" + (f"/{subfolder}" if subfolder else "")

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        x = images.to(self.device, self.dtype) * 2 - 1
        dist = self.vae.encode(x).latent_dist
        z = dist.mean
        if self.posterior == "sample":
            if generators is None or len(generators) != z.shape[0]:
                raise ValueError("posterior sampling needs one generator per image")
            noise = torch.stack([randn(z.shape[1:], g, self.device, z.dtype) for g in generators])
            z = z + dist.std * noise
        return ((z - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        x = self.vae.decode(z).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    def describe(self) -> dict:
        return {**super().describe(), "scaling_factor": self.scaling_factor, "posterior": self.posterior}


def has_vae(model_dir: str) -> bool:
    p = Path(model_dir)
    return not p.exists() or (p / "vae").is_dir()
