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
from pathlib import Path

import torch
from tqdm.auto import tqdm

from d4m.checks import fits
from d4m.errors import ConfigError, ModelError
from d4m.generator.config import LATENT_BYTES, LEGACY, RESUME_FREE, TrainConfig  # noqa: F401 (TrainConfig: re-exported)
from d4m.runio.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)


def work_dir(out: Path) -> Path:
    """Where training keeps what sampling does not need (checkpoint, latent cache, train.json, log.jsonl):
    ``OUT.work/`` beside the model folder, so OUT holds only the model; a folder from before keeps its OUT/work/."""
    legacy = out / "work"
    return legacy if (legacy / "checkpoint.pt").is_file() else out.parent / f"{out.name}.work"


def _paths(out: Path) -> dict:
    work = work_dir(out)
    return {"config": work / "train.json", "ckpt": work / "checkpoint.pt", "loss": out / "loss.csv",
            "log": work / "log.jsonl", "work": work}


def claim_generator(out: Path, write: bool = True) -> None:
    """``out`` is new, empty or a generator folder d4m made (never a run, an export, samples or a foreign folder);
    a finished model without a checkpoint to continue from is not trained over. ``write=False``: check only."""
    from d4m.runio.rundir import RunDir

    folder = RunDir(out, "generator")
    folder.check_owner("--out")
    if (out / "d4m.json").is_file() and not _paths(out)["ckpt"].is_file():
        raise ConfigError(f"--out {out} holds a trained generator without a checkpoint to resume from; "
                          "use a new --out")
    if write:
        folder.claim("--out")


def check_resume(cfg: TrainConfig, out: Path, resume: bool) -> dict | None:
    """The checkpoint to continue from (or None); refuse to mix runs or overwrite one silently."""
    p = _paths(out)
    if not p["ckpt"].is_file():
        return None
    if not resume:
        raise ConfigError(f"--out {out} already holds a training checkpoint: add --resume, or use a new --out")
    config = p["config"] if p["config"].is_file() else out / "train.json"  # older folders kept it in OUT
    old = json.loads(config.read_text()) if config.is_file() else {}
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
    from d4m.text_encoders import LEARNED, NAMED_ENCODERS, TABLE_FILE, LearnedEmbedding

    device = resolve_device(cfg.device)
    cfg.validate(device)  # the batch on the device it will run on; the latents below on the host
    out = Path(cfg.out).expanduser()
    p = _paths(out)
    claim_generator(out, write=False)
    state = check_resume(cfg, out, resume)
    dataset = open_dataset(cfg.data, "train", strict=cfg.strict)  # listed and bounded before anything is written
    n_images = min(len(dataset), cfg.max_per_class * len(dataset.classes)) if cfg.max_per_class else len(dataset)
    fits(f"--size {cfg.size}", n_images * 2 * LATENT_BYTES * cfg.size ** 2,
         f"the latents of {n_images:,} images (and their flips) at {cfg.size} px")
    claim_generator(out)
    acc = Accelerator(mixed_precision=_mixed_precision(cfg, device), cpu=not device.startswith("cuda"))
    dev = acc.device
    if acc.is_main_process:
        p["work"].mkdir(parents=True, exist_ok=True)
        atomic_write_text(p["config"], json.dumps(dataclasses.asdict(cfg), indent=1) + "\n")
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
    # foreach on CUDA: one launch per step for all parameters instead of several per tensor (the GPU loop is
    # launch-bound at small latents); the CPU keeps the per-tensor loop
    ema = EMAModel(trained, decay=cfg.ema_decay, use_ema_warmup=True, model_cls=type(unet), model_config=unet.config,
                   foreach=str(dev).startswith("cuda"))
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
    if cfg.compile != "no":  # in place: the module, its state_dict keys and what it computes stay the same
        unet.compile(mode=None if cfg.compile == "default" else cfg.compile)
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
                 "text_encoder": cfg.text_encoder, "latents": str((cache / "latents.safetensors").resolve()),
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
        export_generator(out, model, sampler, cond, info, named=cfg.text_encoder in NAMED_ENCODERS)
        if learned is not None:
            cond.save(out / TABLE_FILE)
        ema.restore(params())
        write_loss_csv(p["loss"], history)

    log.info("training %s UNet (%.2f M params) on %d latents %s, %d steps (%.1f epochs), batch %d, %s",
             cfg.preset, n_params / 1e6, n, tuple(latents.shape[2:]), total, total / spe, cfg.batch_size, dev)
    bar = tqdm(total=total, initial=step, desc="generator train", unit="step", disable=not acc.is_main_process)
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
    stopped = False
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
            window.append(acc.reduce(loss.detach(), "mean"))  # read at the next log row: no sync per step
            bar.update(1)
            if step % every == 0 or step == total:
                window = [float(x) for x in window]
                bar.set_postfix(loss=f"{window[-1]:.4f}", epoch=f"{step / spe:.2f}")
                rate = (step - seen0) * cfg.batch_size / (time.perf_counter() - t0)
                history.append({"step": step, "epoch": step / spe, "loss": sum(window) / len(window),
                                "lr": lr_sched.get_last_lr()[0], "samples_per_s": rate})
                window = []
            # the wall-time budget: every process stops at the same step (the main process's clock decides)
            over = deadline is not None and step < total and time.monotonic() >= deadline
            if deadline is not None and acc.num_processes > 1:
                over = bool(acc.reduce(torch.tensor(float(over), device=dev), "max"))
            if over and step % every:
                window = [float(x) for x in window]  # the losses held on the device since the last log row
                history.append({"step": step, "epoch": step / spe, "loss": sum(window) / len(window),
                                 "lr": lr_sched.get_last_lr()[0],
                                 "samples_per_s": (step - seen0) * cfg.batch_size / (time.perf_counter() - t0)})
                window = []
            if step % cfg.checkpoint_every == 0 or step == total or over:
                save(step)
            if over:
                stopped = True
                break
    bar.close()
    acc.wait_for_everyone()
    if acc.is_main_process:
        log.info("trained to step %d, loss %.4f, %.1f samples/s; model in %s (checkpoint and latents in %s)", step,
                 history[-1]["loss"] if history else float("nan"), timer.record.get("samples_per_s") or 0, out,
                 p["work"])
        if stopped:
            log.info("stopped by --max-minutes %g at step %d of %d; the same command with --resume continues",
                     cfg.max_minutes, step, total)
    return out
