"""``d4m distill`` (both stages), ``d4m prototypes`` (stage 1) and ``d4m synthesize`` (stage 2)."""

from __future__ import annotations

import argparse
import logging

from d4m.config import DistillConfig, preset_names

log = logging.getLogger(__name__)


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
    a("--codec", help="model (the model's VAE, default) | vae:PATH | taef2 (fetched by name) | taef2:DIR")
    a("--model", help="diffusers model: hub id or local directory, or a generator shipped with d4m by name "
                      "(cifar10-taef2) (default stable-diffusion-v1-5/...)")
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


def run_command(args: argparse.Namespace) -> int:
    from d4m import api

    given = _given(args)
    if args.stage == "synthesize":
        run = api.synthesize(args.run, force=args.force, **given)
    else:
        stage = api.distill if args.stage == "distill" else api.find_prototypes
        run = stage(config=args.config, force=args.force, **given)
    log.debug("%s: %s", args.stage, run.path)
    return 0
