"""``d4m generator train``: a text-conditioned latent diffusion UNet on a dataset's codec latents.

AdamW with a constant learning rate after warm-up (so extending a run with more steps changes nothing before),
EMA weights (those are exported), autocast in bf16/fp16 on CUDA, accelerate for device placement and DDP.
A checkpoint (model, EMA, optimiser, step, loss history) is written atomically every ``checkpoint_every`` steps
together with the exported model; ``--resume`` continues from it exactly as if never stopped.
"""

from __future__ import annotations

import dataclasses
import io
import math
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from d4m.checks import fits
from d4m.errors import ConfigError, ModelError
from d4m.generator.unet_presets import PREDICTIONS, PRESETS, SCHEDULES
from d4m.runio.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)
RESUME_FREE = ("epochs", "max_steps", "checkpoint_every", "workers", "device", "mixed_precision", "encode_batch_size",
               "latent_cache")
LEGACY = {"latent_norm": "global", "prediction": "epsilon", "snr_gamma": None, "schedule": "sd"}  # before these options
LATENT_NORMS = ("channel", "global")
# memory estimates, before anything is allocated: a latent of an image of s x s px is at most 32 channels at s / 8
# (TAEF2's; SD's VAE has 4), float32: 2 s^2 bytes; a UNet's peak activations are tens of times its input
LATENT_BYTES, ACTIVATIONS = 2, 64


@dataclass
class TrainConfig:
    data: str
    codec: str
    out: str
    size: int = 64
    text_encoder: str = "clip"
    preset: str = "small"
    epochs: int = 50
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    ema_decay: float = 0.9999
    cond_drop: float = 0.1
    max_tokens: int = 32
    max_per_class: int | None = None
    checkpoint_every: int = 500
    seed: int = 0
    mixed_precision: str = "auto"
    device: str = "auto"
    workers: int = 0
    encode_batch_size: int = 64
    latent_norm: str = "channel"  # per-channel mean/std of the training latents | one global scale (older models)
    prediction: str = "v_prediction"  # what the UNet predicts: v_prediction | epsilon (older models)
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting (None or 0: the plain loss)
    schedule: str | None = None  # sd | sd-zero-snr (needs v_prediction) | cosine; None: zero-SNR for v, sd for epsilon
    latent_cache: str | None = None  # folder of the encoded latents, shareable between runs (default OUT/work)

    def __post_init__(self) -> None:
        if self.schedule is None:  # the screens (RESULTS.md 2.1): zero terminal SNR pays with v-prediction
            self.schedule = "sd-zero-snr" if self.prediction == "v_prediction" else "sd"

    def validate(self) -> None:
        checks = [("--epochs", self.epochs >= 1), ("--batch-size", self.batch_size >= 1), ("--lr", self.lr > 0),
                  ("--cond-drop", 0 <= self.cond_drop < 1), ("--ema-decay", 0 <= self.ema_decay < 1),
                  ("--size", self.size >= 8 and self.size % 8 == 0), ("--checkpoint-every", self.checkpoint_every >= 1),
                  ("--max-steps", self.max_steps is None or self.max_steps >= 1),
                  ("--mixed-precision", self.mixed_precision in ("auto", "no", "bf16", "fp16")),
                  ("--preset", self.preset in PRESETS), ("--latent-norm", self.latent_norm in LATENT_NORMS),
                  ("--prediction", self.prediction in PREDICTIONS), ("--schedule", self.schedule in SCHEDULES),
                  ("--snr-gamma", self.snr_gamma is None or self.snr_gamma >= 0)]
        for flag, ok in checks:
            if not ok:
                raise ConfigError(f"{flag} {getattr(self, flag[2:].replace('-', '_'))!r}: invalid value")
        bounds = (("--epochs", self.epochs, 100_000), ("--max-steps", self.max_steps, 10**9),
                  ("--batch-size", self.batch_size, 100_000), ("--size", self.size, 4096),
                  ("--encode-batch-size", self.encode_batch_size, 100_000), ("--max-tokens", self.max_tokens, 4096))
        for flag, value, high in bounds:
            if value is not None and value > high:
                raise ConfigError(f"{flag} {value}: more than d4m runs ({high:,})")
        fits(f"--batch-size {self.batch_size}", self.batch_size * LATENT_BYTES * self.size ** 2 * ACTIVATIONS,
             f"a training batch of {self.batch_size} at {self.size} px")
        fits(f"--encode-batch-size {self.encode_batch_size}", self.encode_batch_size * 12 * self.size ** 2 * 32,
             f"encoding {self.encode_batch_size} images at a time at {self.size} px")
        if self.schedule == "sd-zero-snr" and self.prediction != "v_prediction":
            raise ConfigError("--schedule sd-zero-snr needs --prediction v_prediction (at zero SNR the noise is the "
                              "input itself: epsilon-prediction cannot recover the image)")


def _paths(out: Path) -> dict:
    return {"config": out / "train.json", "ckpt": out / "work" / "checkpoint.pt", "loss": out / "loss.csv",
            "log": out / "log.jsonl", "work": out / "work"}


def claim_generator(out: Path) -> None:
    """``out`` is new, empty or a generator folder d4m made (never a run, an export, samples or a foreign folder);
    a finished model without a checkpoint to continue from is not trained over."""
    from d4m.runio.rundir import RunDir

    folder = RunDir(out, "generator")
    folder.check_owner("--out")
    if (out / "d4m.json").is_file() and not _paths(out)["ckpt"].is_file():
        raise ConfigError(f"--out {out} holds a trained generator without a checkpoint to resume from; "
                          "use a new --out")
    folder.claim("--out")


def check_resume(cfg: TrainConfig, out: Path, resume: bool) -> dict | None:
    """The checkpoint to continue from (or None); refuse to mix runs or overwrite one silently."""
    p = _paths(out)
    if not p["ckpt"].is_file():
        return None
    if not resume:
        raise ConfigError(f"--out {out} already holds a training checkpoint: add --resume, or use a new --out")
    old = json.loads(p["config"].read_text()) if p["config"].is_file() else {}
    new = dataclasses.asdict(cfg)
    diff = [k for k in new if k not in RESUME_FREE and old.get(k, LEGACY.get(k)) != new[k]]
    if diff:
        raise ConfigError(f"--resume: {out} was trained with another configuration ("
                          + ", ".join(f"{k}: {old.get(k, LEGACY.get(k))!r} -> {new[k]!r}" for k in diff[:3]) + ")")
    try:
        return torch.load(p["ckpt"], map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported in one line
        raise ModelError(f"{p['ckpt']}: cannot read the checkpoint ({exc.__class__.__name__})") from None


def _mixed_precision(cfg: TrainConfig, device: str) -> str:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if not device.startswith("cuda"):
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def write_loss_csv(path: Path, history: list[dict]) -> None:
    rows = ["step,epoch,loss,lr,samples_per_s"]
    rows += [f"{h['step']},{h['epoch']:.3f},{h['loss']:.6f},{h['lr']:.3e},{h['samples_per_s']:.2f}" for h in history]
    atomic_write_text(path, "\n".join(rows) + "\n")


def run_train(cfg: TrainConfig, resume: bool = False, text=None) -> Path:
    """Train (or resume) into ``cfg.out``; ``text``: an already loaded encoder or an ``EmbeddingTable`` of the
    dataset's label texts and the empty prompt (instead of loading ``cfg.text_encoder``)."""
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from d4m.codec import build_codec
    from d4m.data import open_dataset
    from d4m.generator.export import export_generator
    from d4m.generator.latents import channel_stats, encode_dataset, latent_scale, select_indices
    from d4m.generator.objective import batch_inputs, diffusion_loss, draw, steps_per_epoch
    from d4m.generator.text import load_text_encoder
    from d4m.generator.unet_presets import build_unet, noise_schedulers
    from d4m.parallel import resolve_device
    from d4m.runio.stagelog import StageTimer
    from d4m.synthesis.generator import LatentNorm
    from d4m.text_encoders import LEARNED, TABLE_FILE, LearnedEmbedding

    cfg.validate()
    out = Path(cfg.out).expanduser()
    p = _paths(out)
    claim_generator(out)
    state = check_resume(cfg, out, resume)
    device = resolve_device(cfg.device)
    acc = Accelerator(mixed_precision=_mixed_precision(cfg, device), cpu=not device.startswith("cuda"))
    dev = acc.device
    if acc.is_main_process:
        atomic_write_text(p["config"], json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
    dataset = open_dataset(cfg.data, "train")
    n_images = min(len(dataset), cfg.max_per_class * len(dataset.classes)) if cfg.max_per_class else len(dataset)
    fits(f"--size {cfg.size}", n_images * 2 * LATENT_BYTES * cfg.size ** 2,
         f"the latents of {n_images:,} images (and their flips) at {cfg.size} px")
    with acc.main_process_first():  # the main process encodes; the others read its cache
        codec = build_codec(cfg.codec, device=dev)
        cache = Path(cfg.latent_cache).expanduser() if cfg.latent_cache else p["work"]
        latents, targets = encode_dataset(dataset, select_indices(dataset, cfg.max_per_class, cfg.seed), codec,
                                          cache, size=cfg.size, batch_size=cfg.encode_batch_size,
                                          workers=cfg.workers, seed=cfg.seed)
    del codec
    if cfg.latent_norm == "channel":
        mean, std = channel_stats(latents)
        norm_info = {"latent_norm": "channel", "latent_mean": mean, "latent_std": std}
    else:
        norm_info = {"latent_norm": "global", "latent_scale": latent_scale(latents)}
    norm = LatentNorm.from_info(norm_info, latents.shape[2])
    prompts = list(dataset.label_texts) + [""]  # the last row: the empty prompt (unconditional)
    learned = LearnedEmbedding(prompts, seed=cfg.seed) if cfg.text_encoder == LEARNED else None
    if text is None and learned is None:
        text = load_text_encoder(cfg.text_encoder, cfg.max_tokens, dev)
    table = text.embed(prompts, dev) if learned is None else None
    channels, size = latents.shape[2], latents.shape[-1]
    torch.manual_seed(cfg.seed)
    unet = build_unet(cfg.preset, channels, size, learned.weight.shape[-1] if learned else text.hidden_size)
    train_sched, sampler = noise_schedulers(cfg.prediction, cfg.schedule)
    trained = list(unet.parameters()) + ([learned.weight] if learned else [])  # the EMA and the optimiser's order
    ema = EMAModel(trained, decay=cfg.ema_decay, use_ema_warmup=True, model_cls=type(unet), model_config=unet.config)
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=cfg.warmup_steps)
    step, history = 0, []
    if state is not None:
        unet.load_state_dict(state["unet"])
        if learned is not None:
            learned.load_state_dict(state["class_embedding"])
        opt.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        step, history = int(state["step"]), list(state["history"])
        log.info("resuming %s at step %d", out, step)
    unet, learned, opt = acc.prepare(unet, learned, opt)  # the embedding too: several processes keep one (None stays)
    if state is not None and state.get("scaler") is not None and acc.scaler is not None:
        acc.scaler.load_state_dict(state["scaler"])
    ema.to(dev)
    n, spe = latents.shape[0], steps_per_epoch(latents.shape[0], cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * spe
    n_params = sum(x.numel() for x in unet.parameters())
    info_base = {**norm_info, "codec": cfg.codec, "size": cfg.size, "classes": list(dataset.classes),
                 "label_texts": list(dataset.label_texts), "prompt_template": "{}",
                 "text_attention_mask": bool(learned is None and text.attention_mask),
                 "text_encoder": cfg.text_encoder,
                 "latent_shape": list(latents.shape[2:]), "train_images": n, "unet_params": n_params,
                 "train": dataclasses.asdict(cfg)}

    def params() -> list:
        emb = [acc.unwrap_model(learned).weight] if learned is not None else []
        return list(acc.unwrap_model(unet).parameters()) + emb

    def save(step_now: int) -> None:
        if not acc.is_main_process:
            return
        model = acc.unwrap_model(unet)
        blob = io.BytesIO()
        extra = {"class_embedding": acc.unwrap_model(learned).state_dict()} if learned is not None else {}
        torch.save({"unet": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": lr_sched.state_dict(),
                    "ema": ema.state_dict(), "step": step_now, "history": history, **extra,
                    "scaler": acc.scaler.state_dict() if acc.scaler is not None else None}, blob)
        atomic_write_bytes(p["ckpt"], blob.getvalue())
        ema.store(params())
        ema.copy_to(params())
        info = dict(info_base, step=step_now, epoch=round(step_now / spe, 3),
                    final_loss=history[-1]["loss"] if history else None)
        cond = text if learned is None else acc.unwrap_model(learned).table()
        export_generator(out, model, sampler, cond, info)
        if learned is not None:
            cond.save(out / TABLE_FILE)
        ema.restore(params())
        write_loss_csv(p["loss"], history)

    log.info("training %s UNet (%.2f M params) on %d latents %s, %d steps (%.1f epochs), batch %d, %s",
             cfg.preset, n_params / 1e6, n, tuple(latents.shape[2:]), total, total / spe, cfg.batch_size, dev)
    bar = tqdm(total=total, initial=step, desc="generator train", unit="step", disable=not acc.is_main_process)
    window, t0, seen0 = [], time.perf_counter(), step
    every = math.gcd(cfg.checkpoint_every, 50)  # loss rows never straddle a checkpoint, so resume repeats them
    unet.train()
    with StageTimer(p["log"] if acc.is_main_process else None, "generator-train", unit="samples",
                    device=str(dev), world=acc.num_processes) as timer:
        while step < total:
            batch = draw(step, n, cfg.batch_size, cfg.seed, latents.shape[2:],
                         train_sched.config.num_train_timesteps, cfg.cond_drop).shard(acc.process_index,
                                                                                      acc.num_processes)
            x0, rows = batch_inputs(batch, latents, targets, norm, len(prompts) - 1, dev)
            with acc.autocast():
                cond = table[rows] if learned is None else learned(rows)
                loss = diffusion_loss(unet, train_sched, x0, cond, batch.noise, batch.t, cfg.snr_gamma)
            acc.backward(loss)
            acc.clip_grad_norm_(params(), 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
            ema.step(params())
            step += 1
            timer.items += cfg.batch_size
            window.append(float(acc.reduce(loss.detach(), "mean")))
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.4f}", epoch=f"{step / spe:.2f}")
            if step % every == 0 or step == total:
                rate = (step - seen0) * cfg.batch_size / (time.perf_counter() - t0)
                history.append({"step": step, "epoch": step / spe, "loss": sum(window) / len(window),
                                "lr": lr_sched.get_last_lr()[0], "samples_per_s": rate})
                window = []
            if step % cfg.checkpoint_every == 0 or step == total:
                save(step)
    bar.close()
    acc.wait_for_everyone()
    if acc.is_main_process:
        log.info("trained to step %d, loss %.4f, %.1f samples/s; model in %s", step,
                 history[-1]["loss"] if history else float("nan"), timer.record.get("samples_per_s") or 0, out)
    return out
