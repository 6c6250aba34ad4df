"""Stage 2 orchestration: prototypes -> (img2img denoise) -> codec decode -> PNGs + manifest.jsonl.

Image j of class c starts from prototype j mod C with noise from the generator seeded by (seed, c, j). Work is
split in fixed batches of the full image list, so a resumed or multi-process run computes every image in the
same batch as an uninterrupted single-process run and writes the same bytes. With ``--candidates M`` the list
holds M draws per image (``d4m.synthesis.candidates``) and the teacher keeps one of them afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import re
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from d4m.codec.base import Codec
from d4m.config import DistillConfig
from d4m.data.classnames import render_prompt
from d4m.errors import D4MError, ModelError
from d4m.parallel import Topology
from d4m.runio.atomic import atomic_save_png, atomic_write_text, sha256_file
from d4m.runio.rundir import RunDir, class_folder, image_name
from d4m.seeding import cpu_generator, derive_seed
from d4m.synthesis.candidates import candidate_jobs, choose, load_teacher_for, seed_parts
from d4m.synthesis.generator import Generator, embed_prompts
from d4m.synthesis.img2img import denoise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageJob:
    cls: int
    index: int
    prototype: int
    path: str  # relative to the run directory
    candidate: int = -1  # which of --candidates M draws (-1: a plain image, no candidates)


def plan(classes: list[str], ipc: int, prototypes_per_class: int) -> list[ImageJob]:
    jobs = []
    for c, name in enumerate(classes):
        folder = class_folder(c, name, len(classes))
        for j in range(ipc):
            jobs.append(ImageJob(c, j, j % prototypes_per_class, f"images/{folder}/{image_name(j, ipc)}"))
    return jobs


def check_channels(codec: Codec, gen: Generator | None, prototypes: torch.Tensor) -> None:
    if prototypes.shape[2] != codec.latent_channels:
        raise ModelError(f"prototypes have {prototypes.shape[2]} latent channels but codec {codec.name} has "
                         f"{codec.latent_channels}: rerun `d4m prototypes` with this codec")
    if gen is not None and gen.latent_channels != codec.latent_channels:
        raise ModelError(f"codec {codec.name} has {codec.latent_channels} latent channels but the UNet of "
                         f"{gen.source} takes {gen.latent_channels}")


def to_pil(image: torch.Tensor, out_size: int | None) -> Image.Image:
    arr = (image.permute(1, 2, 0).float().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if out_size and img.size != (out_size, out_size):
        img = img.resize((out_size, out_size), Image.BICUBIC)
    return img


def run_synthesis(cfg: DistillConfig, run: RunDir, prototypes: torch.Tensor, label_texts: list[str],
                  classes: list[str], codec: Codec, gen: Generator | None, topo: Topology, device, dtype,
                  timer=None, skipped: list[list[str]] | None = None) -> list[ImageJob]:
    """Write every image of the plan that is not on disk yet, then (main process) the manifest.

    ``skipped`` lists, per class, the source files that could not be decoded; their count goes in the manifest.
    """
    check_channels(codec, gen, prototypes)
    jobs = plan(classes, cfg.ipc, prototypes.shape[1])
    temps = check_images_folder(run, {j.path for j in jobs})  # a foreign file is refused before anything is written
    if topo.is_main:
        for t in temps:  # atomic writes cut by a kill: d4m's own
            t.unlink(missing_ok=True)
    topo.barrier()
    m = cfg.candidates if gen is not None else 1
    teacher = load_teacher_for(cfg.candidate_teacher, classes, device) if m > 1 else None
    work = candidate_jobs(jobs, m) if m > 1 else jobs
    batches = [work[i : i + cfg.batch_size] for i in range(0, len(work), cfg.batch_size)]
    done = run.written()  # an image counts as made once its file is in place and its hash is in the journal
    mine = topo.mine(batches)
    intact = {j.path for b in mine for j in b if j.path in done and (run.path / j.path).is_file()
              and sha256_file(run.path / j.path) == done[j.path]}  # a truncated or changed image is made again
    todo = [b for b in mine if not all(j.path in intact for j in b)]
    prompts = [render_prompt(cfg.prompt_template, t) for t in label_texts]
    norm = gen.norm if gen is not None else None
    cache: dict[int, torch.Tensor] = {}
    uncond = None
    if gen is not None and todo and cfg.guidance > 1.0:
        uncond = embed_prompts(gen, [cfg.negative_prompt], device).to(dtype)
    with tqdm(total=sum(len(b) for b in todo), desc="synthesis", unit="img", disable=not todo) as bar:
        for batch in todo:
            init = torch.stack([prototypes[j.cls, j.prototype] for j in batch]).to(device, torch.float32)
            if gen is None:
                latents = init
            else:
                for c in {j.cls for j in batch} - cache.keys():  # each class's text embedded once
                    cache[c] = embed_prompts(gen, [prompts[c]], device).to(dtype)[0]
                cond = torch.stack([cache[j.cls] for j in batch])
                gens = [cpu_generator(cfg.seed, "synthesis", *seed_parts(j)) for j in batch]
                modes = norm.to_model(init).to(dtype)
                latents = denoise(gen.unet, gen.scheduler, modes, cond,
                                  uncond.expand(len(batch), -1, -1) if uncond is not None else None,
                                  strength=cfg.strength, steps=cfg.steps, guidance=cfg.guidance, generators=gens,
                                  from_noise=cfg.init == "noise", modes=modes, mode_scale=cfg.mode_guidance,
                                  mode_stop=cfg.mode_stop)
                latents = norm.from_model(latents.float())
            images = codec.decode(latents)
            hashes = [(j.path, atomic_save_png(run.path / j.path, to_pil(img, cfg.out_size)))
                      for j, img in zip(batch, images)]
            run.record_images(hashes, topo.rank)
            bar.update(len(batch))
            if timer is not None:
                timer.items += len(batch)
    topo.barrier()
    if topo.is_main:
        picked = choose(run, jobs, m, cfg.diversity, teacher, device, topo.rank) if m > 1 else {}
        write_manifest(cfg, run, jobs, classes, prompts, codec, gen, skipped, picked)
    topo.barrier()
    return jobs


def guidance_record(cfg, picked: dict, job: ImageJob) -> dict:
    """The manifest's fields for the guided-synthesis options an image was made with (none when unused); with
    candidates, ``seed`` is the kept candidate's."""
    out = {}
    if cfg.mode_guidance > 0:
        out.update(mode_guidance=cfg.mode_guidance, mode_stop=cfg.mode_stop)
    if job.path in picked:
        kept = dataclasses.replace(job, candidate=picked[job.path]["candidate"])
        out.update(picked[job.path], candidate_teacher=cfg.candidate_teacher, diversity=cfg.diversity,
                   seed=derive_seed(cfg.seed, "synthesis", *seed_parts(kept)))
    return out


_TEMP = re.compile(r"^\..+\.tmp$")  # d4m.runio.atomic's temporary names


def check_images_folder(run: RunDir, planned: set[str]) -> list[Path]:
    """The temporary files a killed write left under images/ (to delete); a file or folder there that d4m does not
    write is refused in one line, before any work (d4m deletes only what it made)."""
    temps = []
    if not run.images.is_dir():
        return temps
    folders = {str(Path(f).parent) for f in planned}
    for p in sorted(run.images.rglob("*")):
        rel = p.relative_to(run.path).as_posix()
        if p.is_dir() and not p.is_symlink() and rel in folders:
            continue
        if p.is_file() and not p.is_symlink() and _TEMP.match(p.name) and str(Path(rel).parent) in folders:
            temps.append(p)
        elif rel not in planned:
            raise D4MError(f"{run.path}: {rel} is not an image this run makes (d4m never deletes what it did not "
                           "make): move it away and rerun")
    return temps


def write_manifest(cfg, run: RunDir, jobs: list[ImageJob], classes, prompts, codec: Codec, gen,
                   skipped: list[list[str]] | None = None, picked: dict | None = None) -> None:
    """One line per image; its sha256 is the hash of the bytes synthesis wrote (from the journal), not of the disk."""
    lines, picked = [], picked or {}
    skipped = skipped or [[] for _ in classes]
    written = run.written()
    missing = [j.path for j in jobs if j.path not in written]
    if missing:
        raise D4MError(f"{run.path}: {len(missing)} images were not recorded as written (first: {missing[0]}); "
                       "rerun the same command to make them")
    for j in jobs:
        lines.append(json.dumps({
            "file": j.path, "class_index": j.cls, "class_name": classes[j.cls], "prompt": prompts[j.cls],
            "prototype_index": j.prototype, "seed": derive_seed(cfg.seed, "synthesis", j.cls, j.index),
            "init": cfg.init if gen is not None else None,
            "strength": (cfg.strength if cfg.init == "prototypes" else 1.0) if gen is not None else None,
            "guidance": cfg.guidance if gen is not None else None, "steps": cfg.steps if gen is not None else None,
            "negative_prompt": cfg.negative_prompt if gen is not None else None,
            "model": gen.source if gen is not None else None, "generator": cfg.generator, "codec": codec.name,
            "source_files_skipped": len(skipped[j.cls]), "sha256": written[j.path],
            **guidance_record(cfg, picked, j)}))
    atomic_write_text(run.manifest, "\n".join(lines) + "\n")
