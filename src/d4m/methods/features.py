"""Teacher features: the input of the teacher's last linear layer (its penultimate representation), by a hook."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from d4m.errors import ModelError


def last_linear(net: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in module order (the classifier head of every d4m / torchvision classifier)."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"{type(net).__name__}: no linear classifier layer to take features from")
    return linears[-1]


@torch.no_grad()
def teacher_features(teacher, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[n, d] float32 penultimate features of ``images`` ([n, 3, H, W] in [0, 1]) through ``teacher.model``."""
    head = last_linear(teacher.model)
    grabbed: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, inputs: grabbed.append(inputs[0].detach().flatten(1)))
    device = next(teacher.model.parameters()).device
    try:
        out = []
        for s in range(0, images.shape[0], batch_size):
            x = images[s : s + batch_size].to(device).float()
            if x.shape[-1] != teacher.input_size or x.shape[-2] != teacher.input_size:
                x = F.interpolate(x, size=(teacher.input_size, teacher.input_size), mode="bilinear",
                                  antialias=True, align_corners=False)
            grabbed.clear()
            teacher.model(x)
            out.append(grabbed[-1].float().cpu())
    finally:
        handle.remove()
    return torch.cat(out) if out else torch.zeros(0, head.in_features)
