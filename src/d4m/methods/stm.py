"""STM (paper Table 3): optimise images so the teacher's BatchNorm statistics match, SRe2L "recover" style.

loss = CE(teacher(x), class) + bn_weight * sum over BN layers of (||mean_b(x_l) - running_mean||_2
                                                                   + ||var_b(x_l) - running_var||_2)
with x_l the BN layer's input and mean_b / var_b taken over the batch and the spatial positions. Adam on the
pixels (kept in [0, 1]); each iteration sees a seeded random shift (up to 1/8 of the side, wrapped) and flip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from d4m.errors import ModelError
from d4m.seeding import cpu_generator

ITERATIONS = 300  # defaults for `d4m stm` (32 px CIFAR images; SRe2L uses 1000 at 224 px on ImageNet)
LR = 0.05
BN_WEIGHT = 0.01  # SRe2L's r_bn


class BNStatLoss:
    """Forward hooks on every BatchNorm2d of ``net``; ``value()`` is the summed statistic distance of the last pass."""

    def __init__(self, net: nn.Module):
        self.terms: list[torch.Tensor] = []
        self.layers = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ModelError(f"{type(net).__name__}: no BatchNorm2d layers, so STM has no statistics to match")
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]

    def _hook(self, module: nn.BatchNorm2d, inputs, _output) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False)
        self.terms.append(torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2))

    def value(self) -> torch.Tensor:
        out = torch.stack(self.terms).sum()
        self.terms = []
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    limit = max(1, x.shape[-1] // 8)
    dy, dx = (int(v) for v in torch.randint(-limit, limit + 1, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    return x.flip(-1) if bool(torch.rand(1, generator=g) < 0.5) else x


def recover(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, iterations: int = ITERATIONS,
            lr: float = LR, bn_weight: float = BN_WEIGHT, input_size: int | None = None, seed: int = 0,
            progress=None) -> tuple[torch.Tensor, dict]:
    """Optimise ``images`` ([n, 3, H, W] in [0, 1]) against ``model`` (eval mode, inputs in [0, 1]).

    Returns (images in [0, 1], {"ce": [first, last], "bn": [first, last]}). ``progress(i)`` is called per iteration.
    """
    model.eval()
    device = next(model.parameters()).device
    x = images.detach().clone().to(device).float().requires_grad_(True)
    y = targets.to(device).long()
    opt = torch.optim.Adam([x], lr=lr, betas=(0.5, 0.9), eps=1e-8)
    bn = BNStatLoss(model)
    g = cpu_generator(seed, "stm")
    trace = {"ce": [], "bn": []}
    try:
        for i in range(iterations):
            inp = _jitter(x, g)
            if input_size and inp.shape[-1] != input_size:
                inp = F.interpolate(inp, size=(input_size, input_size), mode="bilinear", align_corners=False)
            ce = F.cross_entropy(model(inp), y)
            bn_loss = bn.value()
            loss = ce + bn_weight * bn_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
            if i in (0, iterations - 1):
                trace["ce"].append(round(float(ce.detach()), 5))
                trace["bn"].append(round(float(bn_loss.detach()), 5))
            if progress is not None:
                progress(i)
    finally:
        bn.remove()
    return x.detach().cpu(), trace
