"""GPU run phases "genspeed", "generator" and "distill": how many optimiser steps a minute d4m's CIFAR-10 generator
training gets per batch size and compile mode; training it on the carried subset, checking it; distilling with it.

Phase genspeed runs ``run_train`` in short bursts (a fresh model each, the latents encoded once and shared), one
per configuration in CONFIGS, each under its own cap, and reports the steady steps/s between two loss rows (so a
compile in the first steps is timed apart). Steps paid more than samples (RESULTS.md 2.5-2.6), so batch 128
is tried against the 512 of the runs so far, eager, compiled, and compiled with CUDA graphs.

Phase 4 calls the public training code (``d4m.generator.train.run_train``, its default preset and recipe unless
``--preset``) with the carried label-text embeddings standing in for the text encoder. It trains for a fixed wall
budget: a short first run measures the step rate, then the run is resumed (bit-exact, as ``--resume`` is) with
as many steps as the budget holds. The EMA model is saved in diffusers' layout with safetensors shards of at most
15 MB (at most 48 MB in all) and returned as tar parts; 100 images per class are sampled with d4m's sampler and
checked by the ResNet-20 on the device. Phase 5 runs d4m's prototype and synthesis stages with that generator:
IPC 10 from 1,000 images per class at strength 0.5 and 0.7, returned as one tar of PNGs.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import torch

from gpu_kit import OUT_FILE_LIMIT, PACK, RESNET20, TAEF2, TEXT, CapReached, capped, unpack_images

SHARD = "15MB"
MAX_GENERATOR_BYTES = 48 * 10**6
PART_BYTES = 15 * 10**6  # each returned tar part (the device returns files of at most 16 MiB)
# genspeed: (batch, compile mode, cap in seconds), in order of value; the GPU's burst is 100 steps, timed 50-100
CONFIGS = ((128, "no", 35), (512, "no", 30), (128, "default", 75), (128, "reduce-overhead", 75))


def settings(smoke: bool, args) -> dict:
    if smoke:
        return dict(size=32, batch=args.train_batch or 16, burst=(4, 2), calib_steps=2, reserve_s=20, per_class_sample=1,
                    sample_steps=2, distill_from=4, ipc=2, distill_steps=4, workers=0, encode_batch=64,
                    max_per_class=5, preset="tiny", fixed_steps=4, unpack=6)
    return dict(size=64, batch=args.train_batch or 128, burst=(100, 50), calib_steps=100, reserve_s=45, per_class_sample=100,
                sample_steps=25, distill_from=1000, ipc=10, distill_steps=50, workers=0, encode_batch=512,
                max_per_class=None, preset=None, fixed_steps=None, unpack=None)


def train_config(ctx, s: dict, table):
    from d4m.generator.train import TrainConfig

    kw = dict(data=f"folder:{ctx.work / 'cifar10' / 'train'}", codec=f"taef2:{(ctx.kit / TAEF2).resolve()}",
              out=str(ctx.work / "generator"), size=s["size"], text_encoder=table.source, max_tokens=table.max_tokens,
              batch_size=s["batch"], workers=s["workers"], encode_batch_size=s["encode_batch"],
              device="cpu" if ctx.smoke else "cuda", max_per_class=s["max_per_class"],
              mixed_precision="bf16",  # the GPU run's autocast, exercised by the CPU smoke too
              compile=getattr(ctx.args, "gen_compile", None) or "no")
    if ctx.args.preset or s["preset"]:
        kw["preset"] = ctx.args.preset or s["preset"]
    return TrainConfig(**kw)


def phase_generator(ctx, rec: dict) -> None:
    from d4m.codec import build_codec
    from d4m.data import open_dataset
    from d4m.generator.latents import encode_dataset, select_indices
    from d4m.generator.train import run_train
    from d4m.text_encoders import EmbeddingTable

    s = settings(ctx.smoke, ctx.args)
    budget = rec["deadline_s"]  # the phase's own deadline (scaled), set by gpu_run.run_phase
    t_phase = time.perf_counter()
    table = EmbeddingTable.load(ctx.kit / TEXT)
    _, n = unpack_images(ctx.kit / PACK, ctx.work / "cifar10" / "train", per_class=s["unpack"])
    rec["train_images"] = n
    cfg = train_config(ctx, s, table)
    rec["config"] = {k: getattr(cfg, k) for k in ("preset", "batch_size", "lr", "ema_decay", "size", "text_encoder")}
    # encode once here (timed); run_train finds the same cache and does not encode again
    dataset = open_dataset(cfg.data, "train")
    codec = build_codec(cfg.codec, device=cfg.device)
    t = time.perf_counter()
    from d4m.generator.train import work_dir

    cache = Path(getattr(cfg, "latent_cache", None) or work_dir(Path(cfg.out)))  # where run_train looks
    latents, _ = encode_dataset(dataset, select_indices(dataset, cfg.max_per_class, cfg.seed), codec,
                                cache, size=cfg.size, batch_size=cfg.encode_batch_size,
                                workers=cfg.workers, seed=cfg.seed)
    dt = time.perf_counter() - t
    rec["encode"] = {"images": latents.shape[0], "flips": 2, "wall_s": dt, "images_per_s": latents.shape[0] / dt,
                     "latent_shape": list(latents.shape[2:])}
    del codec, latents
    ctx.record("generator", rec)
    train_s = budget - (time.perf_counter() - t_phase) - s["reserve_s"] * ctx.args.deadline_scale
    t = time.perf_counter()
    cfg.max_steps, cfg.checkpoint_every = s["calib_steps"], s["calib_steps"]
    run_train(cfg, text=table)
    history = _history(cfg)
    rate = history[-1]["samples_per_s"] / cfg.batch_size  # steps/s, first steps' warm-up included: an underestimate
    left = train_s - (time.perf_counter() - t)
    steps = s["fixed_steps"] or s["calib_steps"] + max(0, int(left * rate * 0.9))
    every = max(50, (steps // 4) // 50 * 50) if not ctx.smoke else steps
    cfg.max_steps, cfg.checkpoint_every = steps, every  # a cut-short run still leaves an exported EMA model
    rec["train"] = {"calibration_steps_per_s": rate, "planned_steps": steps, "budget_s": train_s}
    ctx.record("generator", rec)
    run_train(cfg, resume=True, text=table)
    history = _history(cfg)
    rec["train"].update(wall_s=time.perf_counter() - t, steps=history[-1]["step"], epochs=history[-1]["epoch"],
                        final_loss=history[-1]["loss"], samples_per_s=history[-1]["samples_per_s"],
                        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if ctx.device == "cuda" else None)
    ctx.record("generator", rec)
    try:  # a model over the size limits is still checked and used in phase 5
        rec["export"] = export_parts(Path(cfg.out), table, ctx.work / "export", ctx.out)
    except RuntimeError as exc:
        rec["export"] = {"error": str(exc)}
    ctx.record("generator", rec)
    rec["check"] = classifier_check(ctx, cfg, table, s)
    rec["summary"] = [f"{rec['train']['steps']} steps ({rec['train']['epochs']:.1f} epochs) at batch {cfg.batch_size}, "
                      f"{rec['train']['samples_per_s']:.0f} samples/s, loss {rec['train']['final_loss']:.4f}; "
                      f"classifier check {rec['check']['accuracy']:.1f}% on {rec['check']['images']} samples "
                      "(target >= 70%)"]


def steady_rate(history: list[dict], batch: int) -> float | None:
    """Steps/s between the last two loss rows (each row's rate counts from the burst's start)."""
    if len(history) < 2:
        return None
    (a, ra), (b, rb) = ((h["step"], h["samples_per_s"]) for h in history[-2:])
    return (b - a) / (b * batch / rb - a * batch / ra)


def phase_genspeed(ctx, rec: dict) -> None:
    from d4m.generator.train import run_train
    from d4m.text_encoders import EmbeddingTable

    s = settings(ctx.smoke, ctx.args)
    table = EmbeddingTable.load(ctx.kit / TEXT)
    data = ctx.work / "genspeed-data"  # 1,000 per class: the step rate does not depend on the dataset's size
    _, n = unpack_images(ctx.kit / PACK, data, per_class=s["unpack"] or 1000)
    steps, timed_from = s["burst"]
    rec["settings"] = {"train_images": n, "burst_steps": steps, "timed_from_step": timed_from,
                       "configs": [list(c) for c in CONFIGS]}
    rec["runs"] = {}
    for batch, mode, cap in CONFIGS:
        key = f"batch{batch}-{mode}"
        batch = batch // 32 if ctx.smoke else batch  # smoke: 4 and 16, the same ratio
        r = rec["runs"][key] = {"batch": batch, "compile": mode, "cap_s": cap * ctx.args.deadline_scale}
        if ctx.smoke and mode != "no":
            r["skipped"] = ("smoke: inductor's CPU compile of a training step takes minutes (the option itself is "
                            "tested in tests/test_generator.py with dynamo's capture only)")
            continue
        cfg = train_config(ctx, dict(s, batch=batch), table)
        cfg.data, cfg.out = f"folder:{data}", str(ctx.work / "genspeed" / key)
        cfg.latent_cache = str(ctx.work / "genspeed-latents")  # encoded by the first burst, read by the others
        cfg.compile, cfg.max_steps, cfg.checkpoint_every = mode, steps, steps
        t = time.perf_counter()
        try:
            with capped(r["cap_s"], f"genspeed {key}"):
                run_train(cfg, text=table)
        except CapReached as exc:
            r["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a configuration that fails is a finding; the next still runs
            r["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            torch._dynamo.reset()
        r["wall_s"] = time.perf_counter() - t
        if (Path(cfg.out) / "loss.csv").is_file():
            history = _history(cfg)
            rate = steady_rate(history, batch)
            r.update(steps=history[-1]["step"], final_loss=history[-1]["loss"], steps_per_s=rate,
                     steps_per_min=rate * 60 if rate else None, samples_per_s=rate * batch if rate else None,
                     first_steps_s=history[0]["step"] * batch / history[0]["samples_per_s"])
        ctx.record("genspeed", rec)
    done = {k: v["steps_per_s"] for k, v in rec["runs"].items() if v.get("steps_per_s")}
    rec["best"] = max(done, key=done.get) if done else None
    rec["summary"] = [", ".join(f"{k} {v * 60:.0f} steps/min" for k, v in done.items())
                      + (f"; most steps/min: {rec['best']}" if done else "")]


def _history(cfg) -> list[dict]:
    lines = (Path(cfg.out) / "loss.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, ln.split(",")))) for ln in lines[1:]]


def export_parts(model: Path, table, stage: Path, out: Path) -> dict:
    """The EMA UNet re-saved with <= 15 MB safetensors shards (fp32, or fp16 if fp32 exceeds 48 MB), the scheduler,
    d4m.json, loss.csv and the embedding table, as one tar split into ``generator.tar.partNN`` files in ``out``."""
    from diffusers import UNet2DConditionModel

    from d4m.text_encoders import TABLE_FILE

    if stage.exists():
        shutil.rmtree(stage)
    folder = stage / model.name
    unet = UNet2DConditionModel.from_pretrained(str(model / "unet"), torch_dtype=torch.float32)
    n = sum(p.numel() for p in unet.parameters())
    dtype = torch.float32 if n * 4 <= MAX_GENERATOR_BYTES - 2 * 10**6 else torch.float16
    unet.to(dtype).save_pretrained(str(folder / "unet"), max_shard_size=SHARD, safe_serialization=True)
    shutil.copytree(model / "scheduler", folder / "scheduler")
    for name in ("d4m.json", "loss.csv", "train.json"):
        if (model / name).is_file():
            shutil.copy2(model / name, folder / name)
    table.save(folder / TABLE_FILE)
    shards = sorted(p.stat().st_size for p in (folder / "unet").glob("*.safetensors"))
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if shards[-1] > 15 * 10**6 or total > MAX_GENERATOR_BYTES:
        raise RuntimeError(f"generator export is {total / 1e6:.1f} MB (largest shard {shards[-1] / 1e6:.1f} MB): "
                           "over the 48 MB / 15 MB limits")
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w") as tar:
        tar.add(folder, arcname=folder.name)
    data = blob.getvalue()
    parts = []
    for i in range(0, len(data), PART_BYTES):
        path = out / f"generator.tar.part{i // PART_BYTES:02d}"
        path.write_bytes(data[i : i + PART_BYTES])
        assert path.stat().st_size <= OUT_FILE_LIMIT
        parts.append(path.name)
    return {"unet_params_m": n / 1e6, "dtype": str(dtype), "shards": len(shards), "largest_shard_mb": shards[-1] / 1e6,
            "total_mb": total / 1e6, "parts": parts}


def classifier_check(ctx, cfg, table, s: dict) -> dict:
    """d4m's sampler (from pure noise, DDIM, guidance 3) then the CIFAR-10 ResNet-20 on the device."""
    from torchvision.transforms.functional import pil_to_tensor

    from d4m.data import open_dataset
    from d4m.generator.sample import sample_to_folder
    from d4m.models import load_teacher
    from d4m.synthesis.generator import load_generator

    dev = cfg.device
    gen = load_generator(cfg.out, device=dev, table=table)
    folder = ctx.work / "samples"
    if folder.exists():
        shutil.rmtree(folder)
    t = time.perf_counter()
    sample_to_folder(gen, cfg.codec, s["per_class_sample"], folder, steps=s["sample_steps"], guidance=3.0, seed=0,
                     batch_size=250, device=dev, grid=ctx.out / "samples.png")
    sample_s = time.perf_counter() - t
    data = open_dataset(f"folder:{folder}", "train")
    teacher = load_teacher(f"cifar-resnet20:{ctx.kit / RESNET20}", classes=data.classes).to(dev)
    images = torch.stack([pil_to_tensor(data.load(i)) for i in range(len(data))]).float() / 255
    targets = torch.tensor(data.targets)
    pred = torch.cat([teacher(b.to(dev)).argmax(1).cpu() for b in images.split(500)])
    per_class = [float((pred[targets == c] == c).float().mean() * 100) for c in range(len(data.classes))]
    return {"images": len(data), "accuracy": float((pred == targets).float().mean() * 100), "per_class": per_class,
            "sample_steps": s["sample_steps"], "guidance": 3.0, "sample_s": sample_s}


def phase_distill(ctx, rec: dict) -> None:
    from d4m.codec import build_codec
    from d4m.config import DistillConfig
    from d4m.data import open_dataset
    from d4m.parallel import topology
    from d4m.prototypes.stage import load_prototypes, run_prototypes
    from d4m.runio.rundir import RunDir
    from d4m.synthesis.generator import load_generator
    from d4m.synthesis.stage import run_synthesis
    from d4m.text_encoders import EmbeddingTable

    s = settings(ctx.smoke, ctx.args)
    model = ctx.work / "generator"
    if not (model / "d4m.json").is_file():
        raise RuntimeError("no generator from phase 4")
    table = EmbeddingTable.load(ctx.kit / TEXT)
    info = json.loads((model / "d4m.json").read_text())
    dev, dtype = ctx.device, torch.float32  # the generator is small: float32 keeps it exactly as trained
    cfg = DistillConfig(data=f"folder:{ctx.work / 'cifar10' / 'train'}", ipc=s["ipc"], max_per_class=s["distill_from"],
                        model=str(model), codec=info["codec"], size=info["size"], guidance=3.0, negative_prompt="",
                        steps=s["distill_steps"], out_size=32, batch_size=100, encode_batch_size=250, workers=0,
                        device=dev)
    dataset = open_dataset(cfg.data, "train")
    codec = build_codec(cfg.codec, device=dev, dtype=dtype)
    topo = topology(dev)
    gen = load_generator(model, device=dev, dtype=dtype, table=table)
    runs = {}
    for strength in (0.5, 0.7):
        cfg.strength = strength
        run = RunDir(ctx.work / f"distill-s{strength}")
        run.path.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        if strength == 0.5:
            run_prototypes(cfg, run, dataset, codec, topo)
            rec["prototypes_s"] = time.perf_counter() - t
            first = run
        else:
            run.prototypes.write_bytes(first.prototypes.read_bytes())  # one k-means, two strengths
        tensors, meta = load_prototypes(run.prototypes)
        t = time.perf_counter()
        run_synthesis(cfg, run, tensors["prototypes"].float(), meta["label_texts"], meta["classes"], codec, gen, topo,
                      dev, dtype)
        runs[f"s{strength}"] = {"images": len(list(run.images.rglob("*.png"))), "synthesis_s": time.perf_counter() - t}
        rec["runs"] = runs
        ctx.record("distill", rec)
    with tarfile.open(ctx.out / "distilled.tar", "w") as tar:
        for strength in (0.5, 0.7):
            run = ctx.work / f"distill-s{strength}"
            for p in sorted(run.rglob("*")):
                if p.is_file() and (p.suffix == ".png" or p.name in ("manifest.jsonl", "manifest.json")):
                    tar.add(p, arcname=f"distill-s{strength}/{p.relative_to(run)}")
    rec["archive_mb"] = (ctx.out / "distilled.tar").stat().st_size / 1e6
    rec["summary"] = [f"IPC {cfg.ipc} from {cfg.max_per_class}/class: prototypes {rec['prototypes_s']:.1f} s, "
                      + ", ".join(f"{k} {v['synthesis_s']:.1f} s" for k, v in runs.items())
                      + f"; archive {rec['archive_mb']:.2f} MB"]
