"""``d4m generator train`` (a small latent diffusion model on a dataset's codec latents) and ``generator sample``."""

from __future__ import annotations

import argparse
import logging

from d4m import api
from d4m.settings import add_flags

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("generator", help="train / sample a small text-conditioned latent diffusion model",
                       description="train / sample a small text-conditioned latent diffusion model")
    gsub = p.add_subparsers(dest="generator_command", metavar="COMMAND")
    t = gsub.add_parser("train", help="train a generator on a dataset's codec latents (diffusers format out)")
    add_flags(t, "generator train")
    t.set_defaults(func=run_train_command)
    s = gsub.add_parser("sample", help="class-conditional images from pure noise into an ImageFolder")
    add_flags(s, "generator sample")
    s.set_defaults(func=run_sample_command)


def run_train_command(args: argparse.Namespace) -> int:
    from d4m.generator.train import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__) - {"data", "codec", "out"}
    settings = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    api.train_generator(args.data, args.codec, args.out, resume=args.resume, threads=args.threads, **settings)
    return 0


def run_sample_command(args: argparse.Namespace) -> int:
    paths = api.sample_generator(args.model, args.out, per_class=args.per_class, codec=args.codec, steps=args.steps,
                                 guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                                 device=args.device, threads=args.threads, grid=args.grid, scheduler=args.scheduler)
    log.info("%d images in %s", len(paths), args.out)
    return 0
