"""The training objective, free of I/O: which samples a step sees, and the epsilon-prediction loss.

Every random choice of step ``s`` (batch, flips, timesteps, noise, dropped prompts) comes from generators seeded
by (seed, s) or (seed, epoch), drawn on the CPU: a resumed run sees exactly the batches an uninterrupted run does,
and so does any number of processes (each takes a strided slice of the global batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from d4m.seeding import cpu_generator


@dataclass
class StepBatch:
    index: torch.Tensor  # [B] rows of the latent table
    flip: torch.Tensor  # [B] 0 = as is, 1 = horizontally flipped encoding
    t: torch.Tensor  # [B] timesteps
    noise: torch.Tensor  # [B, C, h, w]
    drop: torch.Tensor  # [B] bool: use the empty prompt (classifier-free guidance training)

    def shard(self, rank: int, world: int) -> "StepBatch":
        return StepBatch(*(x[rank::world] for x in (self.index, self.flip, self.t, self.noise, self.drop)))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(n // batch_size, 1)


def draw(step: int, n: int, batch_size: int, seed: int, latent_shape, timesteps: int, cond_drop: float) -> StepBatch:
    """The global batch of optimisation step ``step`` (epochs are seeded permutations, last partial batch dropped)."""
    spe = steps_per_epoch(n, batch_size)
    epoch, k = divmod(step, spe)
    perm = torch.randperm(n, generator=cpu_generator(seed, "generator-epoch", epoch))
    index = perm[k * batch_size : (k + 1) * batch_size]
    b = index.shape[0]
    g = cpu_generator(seed, "generator-step", step)
    flip = torch.randint(0, 2, (b,), generator=g)
    t = torch.randint(0, timesteps, (b,), generator=g)
    noise = torch.randn((b, *latent_shape), generator=g)
    drop = torch.rand(b, generator=g) < cond_drop
    return StepBatch(index, flip, t, noise, drop)


def batch_inputs(batch: StepBatch, latents: torch.Tensor, targets: torch.Tensor, scale: float,
                 null_class: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 [B, C, h, w] scaled latents, class rows [B] into the prompt table, ``null_class`` = empty prompt)."""
    x0 = latents[batch.index, batch.flip].float() * scale
    rows = torch.where(batch.drop, torch.full_like(targets[batch.index], null_class), targets[batch.index])
    return x0.to(device), rows.to(device)


def diffusion_loss(unet, scheduler, x0: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
                   t: torch.Tensor) -> torch.Tensor:
    """MSE between the UNet's noise prediction at the noised x0 and the noise (DDPM's simple loss)."""
    noise, t = noise.to(x0.device, x0.dtype), t.to(x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=cond, return_dict=False)[0]
    return F.mse_loss(pred.float(), noise.float())
