"""Small-image architectures used in dataset distillation: ConvNet-W128, CIFAR ResNet-20/56 (option A), CIFAR ResNet-18."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNet(nn.Module):
    """ConvNet (Gidaris & Komodakis) as in the DC/DM code: ``depth`` x [conv3x3 -> instance norm -> ReLU -> avgpool2].

    Instance norm is ``GroupNorm(width, width, affine=True)`` (one group per channel), as the DC/DM code builds it.
    """

    def __init__(self, num_classes: int, image_size: int = 32, width: int = 128, depth: int = 3, channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        size = image_size
        for d in range(depth):
            layers += [nn.Conv2d(channels if d == 0 else width, width, 3, padding=1),
                       nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
            size //= 2
        if size < 1:
            raise ValueError(f"image_size {image_size} too small for a depth-{depth} ConvNet")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class _OptionA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad channels by ``pad`` on each side."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, option: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = _OptionA(planes // 4)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. CIFAR ResNet (16/32/64 channels, option-A shortcuts); key names match the common resnet20.th files."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes, layers = 16, []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(planes, width, stride if b == 0 else 1))
                planes = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 stem and no max-pool (the usual CIFAR / Tiny-ImageNet variant)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net
