"""``d4m generator sample``: class-conditional images from pure noise (classifier-free guidance) into an ImageFolder.

Image j of class c is drawn from noise seeded by (seed, c, j), so it does not depend on batching. Folders are named
``000_airplane`` ... (index order = sorted order), the layout ``folder:DIR`` datasets and teacher evaluation read.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from d4m.seeding import cpu_generator, randn

log = logging.getLogger(__name__)


@torch.no_grad()
def txt2img(unet, scheduler, cond: torch.Tensor, uncond: torch.Tensor, noise: torch.Tensor, steps: int,
            guidance: float) -> torch.Tensor:
    """Denoise ``noise`` [B, C, h, w] over ``steps`` scheduler steps with CFG; returns the final latents."""
    scheduler.set_timesteps(steps, device=noise.device)
    latents = noise * scheduler.init_noise_sigma
    cfg = guidance > 1.0
    embeds = torch.cat([uncond, cond]) if cfg else cond
    extra = {"eta": 0.0} if "eta" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents] * 2) if cfg else latents, t)
        eps = unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        latents = scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
    return latents


def sample_to_folder(model, codec_spec: str | None, per_class: int, out: Path, *, steps: int = 50,
                     guidance: float = 3.0, seed: int = 0, batch_size: int = 50, device: str = "auto",
                     grid: Path | None = None) -> list[Path]:
    from torchvision.utils import save_image

    from d4m.codec import build_codec
    from d4m.errors import ConfigError, ModelError
    from d4m.parallel import resolve_device
    from d4m.runio.atomic import atomic_save_png
    from d4m.runio.rundir import class_folder, image_name
    from d4m.synthesis.generator import embed_prompts, load_generator
    from d4m.synthesis.stage import to_pil

    if per_class < 1:
        raise ConfigError(f"--per-class {per_class}: must be at least 1")
    dev = resolve_device(device)
    # ``model``: a folder / hub id, or a Generator already loaded (e.g. with EmbeddingTable stand-ins)
    gen = load_generator(model, device=dev) if isinstance(model, (str, Path)) else model
    model = str(model) if isinstance(model, (str, Path)) else gen.source
    info = gen.info
    if not info.get("label_texts"):
        raise ModelError(f"--model {model}: no d4m.json with label_texts (not trained by `d4m generator train`)")
    codec_spec = codec_spec or info.get("codec")
    if not codec_spec:
        raise ConfigError("--codec is required (the model's d4m.json names none)")
    codec = build_codec(codec_spec, model, device=dev)
    classes, texts, scale = info["classes"], info["label_texts"], float(info.get("latent_scale", 1.0))
    template = info.get("prompt_template", "{}")
    shape = info.get("latent_shape") or [gen.latent_channels, gen.unet.config.sample_size,
                                         gen.unet.config.sample_size]
    uncond = embed_prompts(gen, [""], dev)
    jobs = [(c, j) for c in range(len(classes)) for j in range(per_class)]
    paths, images = [], []
    bar = tqdm(total=len(jobs), desc="generator sample", unit="img")
    for i in range(0, len(jobs), batch_size):
        batch = jobs[i : i + batch_size]
        cond = torch.cat([embed_prompts(gen, [template.format(texts[c])], dev) for c, _ in batch])
        noise = torch.stack([randn(shape, cpu_generator(seed, "generator-sample", c, j), dev) for c, j in batch])
        z = txt2img(gen.unet, gen.scheduler, cond, uncond.expand(len(batch), -1, -1), noise, steps, guidance)
        decoded = codec.decode(z.float() / scale)
        for (c, j), img in zip(batch, decoded):
            path = Path(out) / class_folder(c, classes[c], len(classes)) / image_name(j, per_class)
            atomic_save_png(path, to_pil(img, None))
            paths.append(path)
            if grid is not None and j < 10:
                images.append(img.cpu())
        bar.update(len(batch))
    bar.close()
    if grid is not None:
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.stack(images), grid, nrow=min(per_class, 10), padding=1)
    return paths
