"""The training objective, free of I/O: which samples a step sees, and the denoising loss.

The UNet predicts the noise (``epsilon``) or the velocity (``v_prediction``, Salimans & Ho), whichever the
scheduler's ``prediction_type`` says; min-SNR-gamma (Hang et al. 2023) optionally reweights timesteps so the
nearly noise-free ones, easy and numerous, do not dominate the gradient.

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


def batch_inputs(batch: StepBatch, latents: torch.Tensor, targets: torch.Tensor, norm,
                 null_class: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 [B, C, h, w] normalised latents, class rows [B] into the prompt table, ``null_class`` = empty prompt).

    ``norm`` is the model's ``LatentNorm`` (codec latents -> the UNet's space)."""
    x0 = norm.to_model(latents[batch.index, batch.flip].float())
    rows = torch.where(batch.drop, torch.full_like(targets[batch.index], null_class), targets[batch.index])
    return x0.to(device), rows.to(device)


def snr_weights(scheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights [B]: min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v-prediction.

    Both equal min(SNR, gamma) times the x0-error weight the plain loss implies, so timesteps with SNR > gamma get
    their weight capped. At SNR 0 (a zero-terminal-SNR step) the epsilon weight is taken as 1."""
    ac = scheduler.alphas_cumprod.to(t.device)[t].float()
    snr = ac / (1 - ac)
    capped = torch.clamp(snr, max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return capped / (snr + 1)
    return torch.where(snr > 0, capped / snr.clamp(min=1e-20), torch.ones_like(snr))


def diffusion_loss(unet, scheduler, x0: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
                   t: torch.Tensor, snr_gamma: float | None = None) -> torch.Tensor:
    """MSE between the UNet's prediction at the noised x0 and its target (noise or velocity), optionally weighted."""
    noise, t = noise.to(x0.device, x0.dtype), t.to(x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=cond, return_dict=False)[0]
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    else:
        raise ValueError(f"prediction_type {kind!r} is not supported")
    err = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, x0.dim())))
    if snr_gamma:
        err = err * snr_weights(scheduler, t, snr_gamma)
    return err.mean()
