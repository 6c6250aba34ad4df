"""``d4m generator train`` (a small latent diffusion model on a dataset's codec latents) and ``generator sample``."""

from __future__ import annotations

import argparse
import logging

from d4m import api

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("generator", help="train / sample a small text-conditioned latent diffusion model",
                       description="train / sample a small text-conditioned latent diffusion model")
    gsub = p.add_subparsers(dest="generator_command", metavar="COMMAND")
    t = gsub.add_parser("train", help="train a generator on a dataset's codec latents (diffusers format out)")
    a = t.add_argument
    a("--data", required=True, help="dataset: cifar10:ROOT | folder:PATH | ... (its train split)")
    a("--codec", required=True, help="codec whose latents the model learns: taef2 | taef2:DIR | vae:PATH")
    a("--out", required=True, help="model folder (unet/, scheduler/, text_encoder/, tokenizer/, d4m.json)")
    a("--size", type=int, default=64, help="images squashed to SIZE x SIZE before encoding (as `d4m distill --size`)")
    a("--text-encoder", default="clip",
      help="clip (SD v1.5's, openai/clip-vit-large-patch14) | minilm | PATH_OR_HUB_ID | learned (a class "
           "embedding trained with the UNet: one 384-wide token per class)")
    a("--preset", default="small", help="UNet: tiny | small (CPU) | wide | base (GPU)")
    a("--epochs", type=int, default=50)
    a("--max-steps", type=int, help="stop after this many optimisation steps (overrides --epochs)")
    a("--batch-size", type=int, default=128)
    a("--lr", type=float, default=3e-4)
    a("--weight-decay", type=float, default=0.01)
    a("--warmup-steps", type=int, default=200)
    a("--ema-decay", type=float, default=0.9999, help="largest EMA decay (warm-up 1 - (1 + step)^-2/3)")
    a("--cond-drop", type=float, default=0.1, help="fraction of samples trained with the empty prompt (CFG)")
    a("--max-tokens", type=int, default=32, help="prompt length the tokenizer pads to")
    a("--max-per-class", type=int, help="train on a seeded subset of at most N images per class")
    a("--checkpoint-every", type=int, default=500, help="steps between checkpoints (and model exports)")
    a("--seed", type=int, default=0)
    a("--mixed-precision", default="auto", help="auto (bf16/fp16 on CUDA, none on CPU) | no | bf16 | fp16")
    a("--device", default="auto", help="auto | cpu | cuda:0 ...")
    a("--workers", type=int, default=0, help="data-loader workers for encoding")
    a("--encode-batch-size", type=int, default=64)
    a("--latent-norm", help="channel (per-channel mean/std of the training latents; default) | global (one scale)")
    a("--prediction", help="what the UNet predicts: v_prediction (default) | epsilon")
    a("--snr-gamma", type=float, help="min-SNR-gamma loss weighting, e.g. 5; 0: the plain loss (default: the recipe's)")
    a("--schedule", help="noise schedule: sd (SD v1.5's) | sd-zero-snr (SD's with zero terminal SNR, needs "
                         "v_prediction) | cosine (default: sd-zero-snr with v_prediction, sd with epsilon)")
    a("--latent-cache", help="folder for the encoded latents, shared between runs (default OUT/work)")
    a("--threads", type=int, help="CPU threads for torch (1 is often fastest on busy shared cores)")
    a("--resume", action="store_true", help="continue from OUT's checkpoint")
    t.set_defaults(func=run_train_command)
    s = gsub.add_parser("sample", help="class-conditional images from pure noise into an ImageFolder")
    b = s.add_argument
    b("--model", required=True, help="a folder written by `d4m generator train`, or a shipped one by name "
                                     "(cifar10-taef2)")
    b("--codec", help="decoder of the latents (default: the codec in the model's d4m.json)")
    b("--per-class", type=int, required=True, help="images per class")
    b("--out", required=True, help="output ImageFolder (one 000_name/ folder per class)")
    b("--steps", type=int, default=50, help="scheduler steps")
    b("--guidance", type=float, default=8.0,
      help="classifier-free guidance scale (<= 1: none; default 8, distillation's and the paper's)")
    b("--scheduler", help="sampler instead of the model's own: ddim | dpm (DPM-Solver++) | euler | ...")
    b("--seed", type=int, default=0)
    b("--batch-size", type=int, default=50)
    b("--device", default="auto")
    b("--threads", type=int, help="CPU threads for torch")
    b("--grid", help="also write a PNG grid (one row per class, up to 10 per row) here")
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
