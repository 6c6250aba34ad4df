"""TAEF2 codec: the shipped weights round-trip CIFAR-10 images well (and random weights do not), shapes, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from d4m.codec.taef2 import TAEF2Codec, build_taef2
from d4m.errors import ModelError

SHARED = Path(os.environ.get("D4M_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
WEIGHTS = SHARED / "weights" / "taef2"
CIFAR_TEST = SHARED / "data" / "cifar10" / "test"
HAVE_WEIGHTS = (WEIGHTS / "taef2_encoder.pth").is_file() and (WEIGHTS / "taef2_decoder.pth").is_file()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"TAEF2 weights not found under {WEIGHTS}")


@pytest.fixture(scope="module")
def codec():
    return TAEF2Codec(WEIGHTS)


def _cifar_images(size: int, per_class: int = 4) -> torch.Tensor:
    """The first ``per_class`` test JPEGs (sorted names) of every class, bicubic-resized to ``size``."""
    from PIL import Image
    import torchvision.transforms.functional as TF

    if not CIFAR_TEST.is_dir():
        pytest.skip(f"CIFAR-10 test images not found under {CIFAR_TEST}")
    files = [f for cls in sorted(p for p in CIFAR_TEST.iterdir() if p.is_dir())
             for f in sorted(cls.glob("*.jpg"))[:per_class]]
    images = [Image.open(f).convert("RGB") for f in files]
    return torch.stack([TF.to_tensor(im.resize((size, size), Image.BICUBIC)) for im in images])


def _mean_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


@needs_weights
def test_round_trip_psnr(codec):
    x64 = _cifar_images(64)
    assert x64.shape[0] == 40
    psnr64 = _mean_psnr(codec.decode(codec.encode(x64)), x64)
    x32 = _cifar_images(32)
    psnr32 = _mean_psnr(codec.decode(codec.encode(x32)), x32)
    print(f"\nTAEF2 round trip, 40 CIFAR-10 test images: 32 px {psnr32:.2f} dB, 64 px {psnr64:.2f} dB")
    assert psnr64 >= 30.0

    torch.manual_seed(0)
    enc, dec = build_taef2(encoder=True).eval(), build_taef2(encoder=False).eval()
    with torch.no_grad():
        random_psnr = _mean_psnr(dec(enc(x64)).clamp(0, 1), x64)
    print(f"random-weight TAEF2, 64 px: {random_psnr:.2f} dB")
    assert random_psnr < 15.0


@needs_weights
def test_shapes_and_range(codec):
    x = torch.rand(2, 3, 64, 64)
    z = codec.encode(x, generators=None)
    assert z.shape == (2, 32, 8, 8) and z.dtype == torch.float32
    assert torch.equal(z, codec.encode(x))  # deterministic
    y = codec.decode(z)
    assert y.shape == (2, 3, 64, 64) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert codec.latent_channels == 32 and codec.downsample == 8
    assert codec.name == f"taef2:{WEIGHTS}"


def test_random_build_shapes():
    enc, dec = build_taef2(encoder=True), build_taef2(encoder=False)
    with torch.no_grad():
        z = enc(torch.rand(1, 3, 32, 32))
        assert z.shape == (1, 32, 4, 4)
        assert dec(z).shape == (1, 3, 32, 32)


def test_missing_weights_names_the_file(tmp_path):
    with pytest.raises(ModelError) as info:
        TAEF2Codec(tmp_path)
    msg = str(info.value)
    assert "taef2_encoder.pth" in msg and "\n" not in msg


def test_wrong_keys_name_the_key(tmp_path):
    good = build_taef2(encoder=True).state_dict()
    torch.save(good, tmp_path / "taef2_encoder.pth")
    bad = build_taef2(encoder=False).state_dict()
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "taef2_decoder.pth")
    with pytest.raises(ModelError, match=r"taef2_decoder\.pth.*unexpected key 'extra\.weight'"):
        TAEF2Codec(tmp_path)
    del bad["extra.weight"], bad["19.bias"]
    torch.save(bad, tmp_path / "taef2_decoder.pth")
    with pytest.raises(ModelError, match=r"taef2_decoder\.pth.*missing key '19\.bias'"):
        TAEF2Codec(tmp_path)
