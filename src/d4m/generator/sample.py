"""``d4m generator sample``: class-conditional images from pure noise (classifier-free guidance) into an ImageFolder.

Image j of class c is drawn from noise seeded by (seed, c, j), so it does not depend on batching. Folders are named
``000_airplane`` ... (index order = sorted order), the layout ``folder:DIR`` datasets and teacher evaluation read.
``sample_images`` yields the decoded images in memory (the classifier check in experiments/ uses it).
"""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Iterator

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
        out = unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0]
        if cfg:
            out_u, out_c = out.chunk(2)
            out = out_u + guidance * (out_c - out_u)
        latents = scheduler.step(out, t, latents, **extra, return_dict=False)[0]
    return latents


def sample_images(gen, codec, per_class: int, *, steps: int = 50, guidance: float = 8.0, seed: int = 0,
                  batch_size: int = 50, device="cpu", progress: bool = True) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(class, index, image [3, H, W] in [0, 1]) for ``per_class`` images of every class of a d4m-trained ``gen``."""
    from d4m.errors import ModelError
    from d4m.synthesis.generator import embed_prompts

    info = gen.info
    if not info.get("label_texts"):
        raise ModelError(f"--model {gen.source}: no d4m.json with label_texts (not trained by `d4m generator train`)")
    texts, template, norm = info["label_texts"], info.get("prompt_template", "{}"), gen.norm
    shape = info.get("latent_shape") or [gen.latent_channels, gen.unet.config.sample_size,
                                         gen.unet.config.sample_size]
    check_sample_sizes(gen, shape, len(texts), per_class, steps, batch_size, device)
    uncond = embed_prompts(gen, [""], device)
    prompts = embed_prompts(gen, [template.format(t) for t in texts], device)  # each class's text embedded once
    jobs = [(c, j) for c in range(len(texts)) for j in range(per_class)]
    bar = tqdm(total=len(jobs), desc="generator sample", unit="img", disable=not progress)
    for i in range(0, len(jobs), batch_size):
        batch = jobs[i : i + batch_size]
        cond = prompts[[c for c, _ in batch]]
        noise = torch.stack([randn(shape, cpu_generator(seed, "generator-sample", c, j), device) for c, j in batch])
        z = txt2img(gen.unet, gen.scheduler, cond, uncond.expand(len(batch), -1, -1), noise, steps, guidance)
        for (c, j), img in zip(batch, codec.decode(norm.from_model(z.float()))):
            yield c, j, img
        bar.update(len(batch))
    bar.close()


ACTIVATIONS = 64  # a UNet's peak activations are tens of times its input; generous, to refuse only the absurd


def check_sample_sizes(gen, shape, classes: int, per_class: int, steps: int, batch_size: int,
                       device: str = "cpu") -> None:
    """Sizes from the flags and from the model's d4m.json, bounded before any tensor is allocated: the batch against
    ``device``'s memory (a CUDA device's free memory, else the host's), the image list against the host's."""
    from d4m.checks import at_most, fits, on_device
    from d4m.errors import ModelError

    source = getattr(gen, "source", "the model")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in shape)):
        raise ModelError(f"--model {source}: d4m.json's latent_shape {shape!r} is not three sizes in [1, 4096]")
    at_most("--per-class", per_class, 1_000_000)
    at_most("--batch-size", batch_size, 100_000)
    at_most("--steps", steps, int(getattr(gen.scheduler.config, "num_train_timesteps", 1000)))
    latent = shape[0] * shape[1] * shape[2] * 4
    size = gen.info.get("size") if isinstance(gen.info.get("size"), int) else shape[-1] * 8
    on_device(f"--batch-size {batch_size}", batch_size * (2 * latent * ACTIVATIONS + 3 * 4 * min(size, 8192) ** 2),
              f"a batch of {batch_size} samples at latent shape {tuple(shape)}", str(device))
    fits(f"--per-class {per_class}", classes * per_class * 200, f"the list of {classes * per_class:,} images")


def sample_to_folder(model, codec_spec: str | None, per_class: int, out: Path, *, steps: int = 50,
                     guidance: float = 8.0, seed: int = 0, batch_size: int = 50, device: str = "auto",
                     grid: Path | None = None, scheduler: str | None = None) -> list[Path]:
    from d4m.checks import at_most
    from d4m.codec import build_codec
    from d4m.errors import ConfigError, ModelError
    from d4m.parallel import resolve_device
    from d4m.runio.atomic import atomic_save_png
    from d4m.runio.rundir import RunDir, class_folder, image_name
    from d4m.synthesis.generator import load_generator
    from d4m.synthesis.stage import to_pil

    if per_class < 1:
        raise ConfigError(f"--per-class {per_class}: must be at least 1")
    at_most("--per-class", per_class, 1_000_000)
    folder = RunDir(out, "samples")
    folder.check_owner("--out")
    if grid is not None:
        check_grid(Path(grid))
    dev = resolve_device(device)
    # ``model``: a folder / hub id, or a Generator already loaded (e.g. with EmbeddingTable stand-ins)
    if isinstance(model, (str, Path)):
        gen = load_generator(str(model), device=dev, scheduler=scheduler)
    elif scheduler is not None:
        raise ConfigError("--scheduler applies to a model folder, not to an already loaded Generator")
    else:
        gen = model
    model = str(model) if isinstance(model, (str, Path)) else gen.source
    info = gen.info
    if not info.get("label_texts"):
        raise ModelError(f"--model {model}: no d4m.json with label_texts (not trained by `d4m generator train`)")
    shape = info.get("latent_shape") or [gen.latent_channels, gen.unet.config.sample_size,
                                         gen.unet.config.sample_size]
    check_sample_sizes(gen, shape, len(info["classes"]), per_class, steps, batch_size, dev)
    codec_spec = codec_spec or info.get("codec")
    if not codec_spec:
        raise ConfigError("--codec is required (the model's d4m.json names none)")
    codec = build_codec(codec_spec, model, device=dev)
    classes = info["classes"]
    expected = {f"{class_folder(c, classes[c], len(classes))}/{image_name(j, per_class)}"
                for c in range(len(classes)) for j in range(per_class)}
    stale = stale_samples(Path(out), expected)  # refuses a file d4m did not write before anything is written
    folder.claim("--out")
    for path in stale:
        path.unlink()
    for d in {p.parent for p in stale}:
        if not any(d.iterdir()):
            d.rmdir()
    paths, images = [], []
    for c, j, img in sample_images(gen, codec, per_class, steps=steps, guidance=guidance, seed=seed,
                                   batch_size=batch_size, device=dev):
        path = Path(out) / class_folder(c, classes[c], len(classes)) / image_name(j, per_class)
        atomic_save_png(path, to_pil(img, None))
        paths.append(path)
        if grid is not None and j < 10:
            images.append(img.cpu())
    if grid is not None:
        from PIL import PngImagePlugin
        from torchvision.utils import make_grid

        meta = PngImagePlugin.PngInfo()
        meta.add_text("Software", GRID_MARK)
        Path(grid).parent.mkdir(parents=True, exist_ok=True)
        atomic_save_png(Path(grid), to_pil(make_grid(torch.stack(images), nrow=min(per_class, 10), padding=1),
                                           None), pnginfo=meta)
    return paths


GRID_MARK = "d4m generator sample --grid"
_TEMP = re.compile(r"^\..+\.tmp$")  # d4m.runio.atomic's temporary names
_SAMPLE_DIR, _SAMPLE_PNG = re.compile(r"^[0-9]{3,}_[A-Za-z0-9._+-]*$"), re.compile(r"^[0-9]{3,}\.png$")


def stale_samples(out: Path, expected: set[str]) -> list[Path]:
    """Images an earlier ``generator sample`` left in ``out`` that this one will not write (more --per-class,
    another model's classes): they go, so a rerun ends as a clean run does. Anything else (a file d4m does not
    write there, a link) is refused in one line."""
    from d4m.errors import ConfigError
    from d4m.runio.rundir import MARKER

    stale = []
    if not out.is_dir():
        return stale
    for entry in sorted(out.iterdir()):
        if entry.name == MARKER and entry.is_file():
            continue
        if _TEMP.match(entry.name) and entry.is_file() and not entry.is_symlink():
            stale.append(entry)  # an atomic write cut by a kill
            continue
        if not entry.is_dir() or entry.is_symlink() or not _SAMPLE_DIR.match(entry.name):
            raise ConfigError(f"--out {out}: {entry.name} was not written by `d4m generator sample`; move it "
                              "away or choose another --out")
        for f in sorted(entry.iterdir()):
            rel = f"{entry.name}/{f.name}"
            if _TEMP.match(f.name) and f.is_file() and not f.is_symlink():
                stale.append(f)
                continue
            if not f.is_file() or f.is_symlink() or not _SAMPLE_PNG.match(f.name):
                raise ConfigError(f"--out {out}: {rel} was not written by `d4m generator sample`; move it away "
                                  "or choose another --out")
            if rel not in expected:
                stale.append(f)
    return stale


def check_grid(grid: Path) -> None:
    """``--grid`` writes a new file or replaces a grid d4m wrote (a PNG carrying its mark), nothing else."""
    from PIL import Image

    from d4m.errors import ConfigError

    if not grid.exists() and not grid.is_symlink():
        return
    mark = None
    if grid.is_file() and not grid.is_symlink():
        try:
            with Image.open(grid) as im:
                mark = getattr(im, "text", {}).get("Software")
        except Exception:  # noqa: BLE001 - whatever it is, d4m did not write it
            mark = None
    if mark != GRID_MARK:
        raise ConfigError(f"--grid {grid}: exists and is not a grid d4m wrote; choose a new file")
