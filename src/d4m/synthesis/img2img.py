"""The img2img denoising loop on latents, batched, with one CPU generator per image.

Written from diffusers' components (UNet, scheduler), step for step as StableDiffusionImg2ImgPipeline does when
it is given latents: the same timesteps for a strength, the same noising, classifier-free guidance and scheduler
steps. Unlike the pipeline it batches different prompts and latent sizes of any channel count, and draws each
image's noise from its own generator so an image never depends on its batch.
"""

from __future__ import annotations

import copy
import inspect
from typing import Callable, Sequence

import torch

from d4m.seeding import randn
from d4m.synthesis.guidance import check_mode_guidance, mode_guidance_steps, pull_toward_mode


def img2img_timesteps(scheduler, steps: int, strength: float, device) -> tuple[torch.Tensor, int]:
    """The timesteps left after skipping the first (1 - strength) of ``steps``, and the begin index."""
    scheduler.set_timesteps(steps, device=device)
    init = min(int(steps * strength), steps)
    t_start = max(steps - init, 0)
    begin = t_start * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return scheduler.timesteps[begin:], begin


@torch.no_grad()
def denoise(unet, scheduler, init_latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None, *,
            strength: float, steps: int, guidance: float, generators: Sequence[torch.Generator],
            eta: float = 0.0, callback: Callable[[int], None] | None = None,
            from_noise: bool = False, modes: torch.Tensor | None = None, mode_scale: float = 0.0,
            mode_stop: float = 0.5) -> torch.Tensor:
    """Noise ``init_latents`` to the strength's first timestep and denoise them; returns the final latents.

    ``cond`` / ``uncond`` are per-image text embeddings [B, L, D]; guidance <= 1 disables classifier-free guidance.
    ``from_noise``: ignore ``init_latents`` (only their shape is used) and run the full schedule from pure noise
    scaled by the scheduler's ``init_noise_sigma``, as text-to-image does (the paper's "w/o prototypes" ablation).
    ``modes`` with ``mode_scale`` > 0: mode guidance (``d4m.synthesis.guidance``): for the first ``mode_stop`` of the
    steps the predicted clean latent is pulled ``mode_scale`` of the way toward ``modes`` (in the UNet's space).
    """
    device, dtype = init_latents.device, cond.dtype
    scheduler = copy.deepcopy(scheduler)
    timesteps, _ = img2img_timesteps(scheduler, steps, 1.0 if from_noise else strength, device)
    if len(timesteps) == 0:
        return init_latents
    b = init_latents.shape[0]
    noise = torch.stack([randn(init_latents.shape[1:], g, device, dtype) for g in generators])
    if from_noise:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(init_latents.to(dtype), noise, timesteps[:1].repeat(b))
    cfg = guidance > 1.0
    embeds = torch.cat([uncond, cond]) if cfg else cond
    params = set(inspect.signature(scheduler.step).parameters)
    extra = {}
    if "eta" in params:
        extra["eta"] = eta
    if "generator" in params:
        extra["generator"] = list(generators)
    guided = 0
    if modes is not None and mode_scale > 0:
        prediction = check_mode_guidance(scheduler)
        guided, modes = mode_guidance_steps(len(timesteps), mode_stop), modes.to(device, dtype)
    for i, t in enumerate(timesteps):
        model_in = torch.cat([latents] * 2) if cfg else latents
        model_in = scheduler.scale_model_input(model_in, t)
        eps = unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        if i < guided:
            alpha_bar = float(scheduler.alphas_cumprod[int(t)])
            eps = pull_toward_mode(eps, latents, alpha_bar, modes, mode_scale, prediction)
        latents = scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
        if callback:
            callback(i)
    return latents
