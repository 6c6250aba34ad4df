"""One name -> architecture registry (like timm's ``create_model``); every model starts from random weights."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from d4m.errors import ConfigError
from d4m.models.nets import ConvNet, CifarResNet, cifar_resnet18

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_IMAGE_SIZE = 4096  # pixels: the largest input side d4m builds a classifier for (more is a typo)
SMALL_INPUT = 64  # pixels: at or below, the nets of SMALL_STEM keep full resolution through their first two strides
SMALL_STEM = ("mobilenet_v2", "efficientnet_b0")


def stem(name: str, image_size: int) -> str | None:
    """"small" where ``create_model`` builds ``name``'s small-input variant at ``image_size``, else None."""
    return "small" if name in SMALL_STEM and int(image_size) <= SMALL_INPUT else None


def small_input(net: nn.Module, count: int = 2) -> nn.Module:
    """Stride 1 instead of 2 in the first ``count`` stride-2 convolutions (the stem and the first downsampling block).

    ImageNet's mobile nets shrink their input 32x, so a 32 px CIFAR image reaches the head as one pixel and they
    stay at chance on small data (RESULTS.md 3); 8x leaves a 4x4 map, as the CIFAR variants of these nets do. Only
    strides change: the weights (and their count) are the same."""
    for module in net.modules():
        if count and isinstance(module, nn.Conv2d) and tuple(module.stride) == (2, 2):
            module.stride, count = (1, 1), count - 1
    return net


def _torchvision(name: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, image_size: int) -> nn.Module:
        from torchvision import models

        kwargs = {"image_size": image_size} if name == "vit_b_16" else {}
        net = getattr(models, name)(weights=None, num_classes=num_classes, **kwargs)
        return small_input(net) if stem(name, image_size) else net
    return build


MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "convnet-w128": lambda n, s: ConvNet(n, s, width=128, depth=3),
    "cifar-resnet18": lambda n, s: cifar_resnet18(n),
    "cifar-resnet20": lambda n, s: CifarResNet(3, n),
    "cifar-resnet56": lambda n, s: CifarResNet(9, n),
    **{name: _torchvision(name) for name in
       ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "efficientnet_b0", "swin_t", "vit_b_16")},
}


def create_model(name: str, num_classes: int, image_size: int) -> nn.Module:
    """Build architecture ``name`` with ``num_classes`` outputs for ``image_size`` x ``image_size`` inputs."""
    if name not in MODELS:
        raise ConfigError(f"--student/--arch {name!r}: unknown model (one of {', '.join(sorted(MODELS))})")
    if name == "vit_b_16" and image_size % 16:
        raise ConfigError(f"vit_b_16 needs an image size divisible by 16, not {image_size}")
    return MODELS[name](int(num_classes), int(image_size))


def weight_count(name: str, num_classes: int, image_size: int) -> int:
    """Numbers in the state dict of ``create_model(name, num_classes, image_size)``, counted on torch's meta device:
    nothing is allocated, so sizes read from a file can be checked before the model is built."""
    with torch.device("meta"):
        net = create_model(name, num_classes, image_size)
    return sum(t.numel() for t in net.state_dict().values())


class Normalized(nn.Module):
    """``net`` applied to ``(x - mean) / std``: callers feed images in [0, 1]."""

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)
