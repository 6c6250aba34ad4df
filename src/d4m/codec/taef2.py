"""TAEF2: a tiny autoencoder for the FLUX.2 latent space (32 channels, 8x downsampling, scale factor 1).

The encoder and decoder are plain ``nn.Sequential`` stacks whose indices match the shipped state dicts
(``taef2_encoder.pth`` / ``taef2_decoder.pth``, fp16). Images go in as RGB in [0, 1] (not [-1, 1]); the raw
encoder output is the latent; the decoder output is clamped to [0, 1]. Encoding is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from d4m.codec.base import Codec
from d4m.errors import ModelError

WIDTH = 64
LATENT_CHANNELS = 32
ENCODER_FILE = "taef2_encoder.pth"
DECODER_FILE = "taef2_decoder.pth"


def _conv(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class _SoftClamp(nn.Module):
    """tanh(x / 3) * 3: keeps out-of-range latents from blowing up the decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class _Block(nn.Module):
    """Residual block: ReLU(conv3(x) + x); with ``pool``, first x = x + 1x1 -> GroupNorm -> ReLU -> 1x1 (x)."""

    def __init__(self, width: int = WIDTH, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(),
                                  _conv(width, width))
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if pool:
            wide = 4 * width
            self.pool = nn.Sequential(nn.Conv2d(width, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(),
                                      nn.Conv2d(wide, width, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def build_taef2(encoder: bool) -> nn.Sequential:
    """The TAEF2 encoder (``encoder=True``) or decoder, randomly initialised (float32)."""
    if encoder:
        layers: list[nn.Module] = [_conv(3, WIDTH), _Block()]
        for i in range(3):
            layers += [_conv(WIDTH, WIDTH, stride=2, bias=False)]
            layers += [_Block(pool=(i == 2)) for _ in range(3)]
        layers += [_conv(WIDTH, LATENT_CHANNELS)]
        return nn.Sequential(*layers)
    layers = [_SoftClamp(), _conv(LATENT_CHANNELS, WIDTH), nn.ReLU()]
    layers += [_Block(pool=True) for _ in range(3)]
    for n_blocks in (3, 3, 1):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(WIDTH, WIDTH, bias=False)]
        layers += [_Block() for _ in range(n_blocks)]
    layers += [_conv(WIDTH, 3)]
    return nn.Sequential(*layers)


def _load_into(net: nn.Sequential, path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"{path}: TAEF2 weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported in one line
        first = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot read the TAEF2 weights: {first}") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(state).__name__}")
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        counts = f"{len(missing)} missing, {len(unexpected)} unexpected"
        raise ModelError(f"{path}: not a TAEF2 state dict ({what}; {counts})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"{path}: key {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


class TAEF2Codec(Codec):
    """latent = encoder(image in [0, 1]) (32 x H/8 x W/8); image = clamp(decoder(latent), 0, 1)."""

    latent_channels = LATENT_CHANNELS
    downsample = 8

    def __init__(self, weights_dir: str | Path, device="cpu", dtype=torch.float32, name: str | None = None):
        super().__init__(device, dtype)
        self.weights_dir = str(weights_dir)
        self.name = name or f"taef2:{self.weights_dir}"  # what runs record: "taef2" when fetched by name
        root = Path(weights_dir)
        self.encoder = build_taef2(encoder=True)
        self.decoder = build_taef2(encoder=False)
        _load_into(self.encoder, root / ENCODER_FILE)
        _load_into(self.decoder, root / DECODER_FILE)
        for net in (self.encoder, self.decoder):
            net.to(self.device, self.dtype).eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"TAEF2 needs image sides divisible by {self.downsample}, got {h}x{w}")
        return self.encoder(images.to(self.device, self.dtype)).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents.to(self.device, self.dtype)).float().clamp(0, 1)
