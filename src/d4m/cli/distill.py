"""``d4m distill`` (both stages), ``d4m prototypes`` (stage 1) and ``d4m synthesize`` (stage 2)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from d4m.config import PROTOTYPE_KEYS, SYNTHESIS_KEYS, DistillConfig, merge, preset_names, resolve, validate
from d4m.errors import ConfigError
from d4m.runio.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

DATASET_RESOLUTION = {"cifar10": 32, "cifar100": 32, "tiny-imagenet": 64, "imagenet": 224}


def _flags(p: argparse.ArgumentParser, stage: str) -> None:
    a = p.add_argument
    a("--config", help="YAML file with any of the keys below (flags override it)")
    a("--preset", help=f"named paper setting: {', '.join(preset_names())}")
    a("--out", help="run directory" + (" for the images (default: --run itself; a new one gets a copy of "
                                       "the prototypes, so one set of prototypes feeds several syntheses)"
                                       if stage == "synthesize" else ""))
    a("--force", action="store_true", help="overwrite a run directory made with another configuration")
    a("--seed", type=int)
    a("--device", help="'auto' (default: CUDA when available), 'cpu', 'cuda:0', ...")
    a("--dtype", help="auto | float32 | float16 | bfloat16 (auto: float16 on CUDA, float32 on CPU)")
    a("--codec", help="model (the model's VAE, default) | vae:PATH | taef2:DIR")
    a("--model", help="diffusers model: hub id or local directory (default stable-diffusion-v1-5/...)")
    a("--workers", type=int, help="data-loader worker processes")
    if stage in ("prototypes", "distill"):
        a("--data", help="dataset: cifar10:ROOT | cifar100:ROOT | tiny-imagenet:ROOT | imagenet:ROOT | folder:PATH")
        a("--ipc", type=int, help="images per class")
        a("--size", type=int, help="encode resolution: images are squashed to SIZE x SIZE (paper 512)")
        a("--kmeans", help="online (paper: one-pass mini-batch k-means) | full (k-means++ and Lloyd)")
        a("--km-expand", type=int, help="online mini-batch = KM_EXPAND x IPC latents")
        a("--km-reassign", type=float, nargs="?", const=0.01, metavar="RATIO",
          help="online: move centres with under RATIO x the largest count onto random points, as scikit-learn's "
          "MiniBatchKMeans.partial_fit in the official code does (RATIO default 0.01)")
        a("--kmeans-iters", type=int, help="full mode: at most this many Lloyd passes")
        a("--max-per-class", type=int, help="cluster a seeded subset of at most N images per class")
        a("--allow-short", action="store_true", default=None,
          help="a class with fewer images than IPC reuses its prototypes (different seeds) instead of failing")
        a("--strict", action="store_true", default=None, help="a corrupt image file is an error, not a warning")
        a("--posterior", help="VAE latent: sample (paper) | mean")
        a("--encode-batch-size", type=int)
        a("--prototype-dtype", help="float32 | float16 storage of prototypes.safetensors")
    if stage in ("synthesize", "distill"):
        if stage == "synthesize":
            a("--run", required=True, help="run directory holding prototypes.safetensors (from `d4m prototypes`)")
            a("--ipc", type=int, help="images per class (default: the prototypes'; more reuse prototypes)")
        a("--generator", help="model (img2img with the model's UNet, default) | none (decode prototypes)")
        a("--init", help="prototypes (D4M, default) | noise (pure noise, full schedule: Table 4 'w/o PT')")
        a("--strength", type=float, help="noise strength in (0, 1] (paper 0.7)")
        a("--guidance", type=float, help="classifier-free guidance scale (paper 8)")
        a("--steps", type=int, help="scheduler steps for strength 1 (paper 50: 35 denoising steps at 0.7)")
        a("--scheduler", help="override the model's scheduler: pndm, ddim, ddpm, euler, dpm, lms")
        a("--prompt-template", help="'{}' (paper: the label text as is) or e.g. 'a photo of a {}'")
        a("--negative-prompt")
        a("--out-size", type=int, help="output resolution (default: the dataset's; official code: 224)")
        a("--batch-size", type=int, help="images denoised together")
        a("--compile", action="store_true", default=None, help="torch.compile the UNet (long GPU runs)")


CLI_KEYS = {f for f in DistillConfig.__dataclass_fields__} - {"extras"}


def _given(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k in CLI_KEYS and v is not None}


def register(sub) -> None:
    for name, helptext in (("distill", "prototypes then synthesis: dataset -> distilled images"),
                           ("prototypes", "stage 1: encode the dataset and cluster each class into IPC prototypes"),
                           ("synthesize", "stage 2: denoise a run's prototypes into images")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        _flags(p, name)
        p.set_defaults(func=run_command, stage=name)


def resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def run_command(args: argparse.Namespace) -> int:
    from d4m.runio.rundir import RunDir

    stage = args.stage
    given = _given(args)
    if stage == "synthesize":
        run = RunDir(args.run)
        old = run.read_config()
        if old is None:
            raise ConfigError(f"--run {args.run}: no config.yaml there (run `d4m prototypes` first)")
        cfg = merge(DistillConfig(), {k: v for k, v in old.items() if k != "out"}, str(run.config))
        cfg = merge(cfg, given, "command line")
        flags = ["strength", "guidance", "steps", "scheduler", "negative_prompt"]
        if cfg.codec != "model":  # with the model's own VAE as the codec, --model may just relocate that model
            flags.append("model")
        denoising = [k for k in flags if k in given]
        if cfg.generator == "none" and "generator" not in given and denoising:
            raise ConfigError(f"--{denoising[0].replace('_', '-')} given, but --run {args.run} decodes its prototypes "
                              "(generator: none in its config.yaml); add --generator model to denoise them")
        source = None
        if args.out and Path(args.out).resolve() != run.path.resolve():
            if not run.prototypes.is_file():
                raise ConfigError(f"--run {args.run}: no prototypes.safetensors there (run `d4m prototypes` first)")
            source, run = run.prototypes, RunDir(args.out)
        cfg.out = str(run.path)
        validate(cfg)
        return execute(cfg, run, stage, args.force, prototypes_from=source)
    else:
        cfg = resolve(given, args.config)
        if not cfg.data:
            raise ConfigError("--data is required (e.g. --data cifar10:~/data or --data folder:PATH)")
        if not cfg.out:
            raise ConfigError("--out is required (the run directory)")
        run = RunDir(cfg.out)
    return execute(cfg, run, stage, args.force)


def execute(cfg: DistillConfig, run, stage: str, force: bool = False, prototypes_from: Path | None = None) -> int:
    from d4m.codec import build_codec
    from d4m.data import DataSpec, open_dataset
    from d4m.parallel import resolve_device, topology
    from d4m.prototypes.stage import class_indices, load_prototypes, run_prototypes
    from d4m.runio.stagelog import StageTimer
    from d4m.synthesis.generator import check_model_dir, load_generator
    from d4m.synthesis.stage import run_synthesis

    topo = topology(cfg.device)
    device = resolve_device(cfg.device, topo)
    dtype = resolve_dtype(cfg.dtype, device)
    needs_model = cfg.codec == "model" or (stage != "prototypes" and cfg.generator == "model")
    if needs_model:
        check_model_dir(cfg.model)
    dataset = None
    if stage in ("prototypes", "distill"):
        dataset = open_dataset(cfg.data, "train")
        class_indices(dataset, cfg)  # fail on short classes before anything is loaded or written
        if cfg.out_size is None:
            spec = DataSpec.parse(cfg.data)
            cfg.out_size = DATASET_RESOLUTION.get(spec.kind) or dataset.load(0).size[0]
    outputs = (run.images, run.manifest)
    if stage in ("prototypes", "distill"):
        keys = PROTOTYPE_KEYS + (SYNTHESIS_KEYS if stage == "distill" else ())
        outputs = (run.prototypes, run.parts) + (outputs if stage == "distill" else ())
    else:  # synthesis settings may change freely until the first image exists
        keys = (SYNTHESIS_KEYS + ("ipc",)) if run.images.is_dir() and any(run.images.iterdir()) else ()
    if prototypes_from is not None:  # a new run dir fed by another run's prototypes: all settings are its own
        keys = PROTOTYPE_KEYS + SYNTHESIS_KEYS + ("ipc",)
    if topo.is_main:
        run.prepare(cfg, keys, force, outputs)
        if prototypes_from is not None:
            atomic_write_bytes(run.prototypes, prototypes_from.read_bytes())
    topo.barrier()
    codec = build_codec(cfg.codec, cfg.model, device=device, dtype=dtype, posterior=cfg.posterior)
    if stage in ("prototypes", "distill"):
        with StageTimer(run.log, "prototypes", unit="images", device=device, world=topo.world) as t:
            run_prototypes(cfg, run, dataset, codec, topo, timer=t)
        if topo.is_main:
            log.info("prototypes: %.1f s, %s images/s", t.record["wall_s"], t.record["images_per_s"])
    if stage in ("synthesize", "distill"):
        tensors, meta = load_prototypes(run.prototypes)
        gen = None
        if cfg.generator == "model":
            gen = load_generator(cfg.model, device=device, dtype=dtype, scheduler=cfg.scheduler)
            if cfg.compile:
                gen.unet = torch.compile(gen.unet)
        with StageTimer(run.log, "synthesis", unit="images", device=device, world=topo.world) as t:
            run_synthesis(cfg, run, tensors["prototypes"].float(), meta["label_texts"], meta["classes"], codec,
                          gen, topo, device, dtype, timer=t, skipped=meta.get("skipped"))
        if topo.is_main:
            log.info("synthesis: %.1f s, %s images/s; images in %s", t.record["wall_s"],
                     t.record["images_per_s"], run.images)
    return 0
