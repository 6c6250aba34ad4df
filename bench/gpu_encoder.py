"""GPU run phase "vae": the SD VAE encoder (random weights, SD v1.5's config) through d4m's codec at 512 px and
batch 32-128, in the same variants as the synthesis phase (eager fp16, channels_last, torch.compile, bf16), each
checked against eager fp16 and an fp32 reference, and torch.profiler's top kernels for channels_last against
contiguous (the first GPU run found channels_last slower: 131 against 176 images/s, unexplained).

It bounds ImageNet-1K's prototype stage (1.28 M encodes). On the CPU (``--smoke``) compile uses dynamo's
``eager`` backend (graph capture only) and only with ``--smoke-compile``; the profiler records CPU operators
instead of CUDA kernels.
"""

from __future__ import annotations

import copy
import time

import torch

from gpu_kit import CapReached, capped
from gpu_sd import settings, sync

CAPS = {"eager": 20, "channels_last": 20, "bf16": 15, "profile": 15, "compile": 70}  # run in this order


def smooth_images(n: int, px: int, seed: int = 0) -> torch.Tensor:
    """Images in [0, 1] with image-like spatial structure (bicubic-upsampled noise), not white noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, max(2, px // 16), max(2, px // 16), generator=g)
    return torch.nn.functional.interpolate(small, size=(px, px), mode="bicubic", align_corners=False).clamp(0, 1)


def top_kernels(prof, device: str, n: int = 10) -> list[dict]:
    """The ``n`` operators (CUDA kernels on the GPU) with the most self time, in ms per profiled call."""
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    rows = []
    for e in prof.key_averages():
        us = getattr(e, key, None)
        if us is None and device == "cuda":
            us = getattr(e, "self_cuda_time_total", 0)
        rows.append({"name": e.key[:120], "self_ms": (us or 0) / 1000, "calls": e.count})
    rows.sort(key=lambda r: -r["self_ms"])
    total = sum(r["self_ms"] for r in rows) or 1.0
    return [dict(r, share=r["self_ms"] / total) for r in rows[:n]]


def phase_vae(ctx, rec: dict) -> None:
    from diffusers import AutoencoderKL

    from d4m.codec.vae import VAECodec
    from d4m.seeding import cpu_generator

    s, dev, smoke = settings(ctx.smoke), ctx.device, ctx.smoke
    batches = (2, 4) if smoke else (32, 64, 128)
    torch.manual_seed(0)
    with torch.device(dev):
        vae = AutoencoderKL(**s["vae"])
    vae.save_pretrained(ctx.work / "sd-vae-variants")  # loaded back through d4m's own codec, as a run would
    del vae
    codec = VAECodec(str(ctx.work / "sd-vae-variants"), subfolder=None, device=dev, dtype=torch.float16)
    px = s["pixels"]
    images = smooth_images(max(batches), px).to(dev)
    gens = [cpu_generator(0, "posterior", 0, i) for i in range(max(batches))]
    rec["settings"] = {"pixels": px, "batches": list(batches), "posterior": codec.posterior, "device": dev}
    check = min(8, batches[0])
    ref_vae = copy.deepcopy(codec.vae).float()
    fp16_vae = codec.vae
    codec.vae, codec.dtype = ref_vae, torch.float32
    with torch.no_grad():
        ref = codec.encode(images[:check], gens[:check])
    codec.vae, codec.dtype = fp16_vae, torch.float16
    del ref_vae
    rec["latent_scale"] = float(ref.abs().max())

    def timed(b: int, dtype) -> tuple[float, torch.Tensor]:
        x = images[:b]
        if next(codec.vae.parameters()).is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            z = codec.encode(x, gens[:b])  # warm-up (or compile) at this shape
            sync(dev)
            t = time.perf_counter()
            for _ in range(1 if smoke else 3):
                z = codec.encode(x, gens[:b])
            sync(dev)
        return (time.perf_counter() - t) / (1 if smoke else 3), z

    rec["variants"] = {}
    eager_z = None
    for name in ("eager", "channels_last", "bf16", "compile"):
        if name == "compile":  # the profile first: the compile may run into the phase's deadline
            try:
                with capped(CAPS["profile"] * ctx.args.deadline_scale, "vae profile"):
                    rec["profile"] = profile_layouts(codec, images[: batches[0]], gens, dev)
            except CapReached as exc:
                rec["profile"] = {"error": str(exc)}
            ctx.record("vae", rec)
        v = rec["variants"][name] = {}
        if name == "compile" and smoke and not getattr(ctx.args, "smoke_compile", False):
            v["skipped"] = "smoke: dynamo's capture is slow on a CPU (--smoke-compile runs it)"
            continue
        encoder = fp16_vae.encoder
        try:
            with capped(CAPS[name] * ctx.args.deadline_scale, f"vae {name}"):
                layout = "channels_last" if name == "channels_last" or (
                    name == "compile" and faster(rec, "channels_last", "eager")) else "contiguous"
                if layout == "channels_last":
                    codec.vae.to(memory_format=torch.channels_last)
                dtype = torch.bfloat16 if name == "bf16" else torch.float16
                if name == "bf16":  # a copy: rounding the fp16 weights to bf16 and back would change them
                    codec.vae, codec.dtype = copy.deepcopy(fp16_vae).to(torch.bfloat16), dtype
                if name == "compile":
                    kw = {"backend": "eager"} if smoke else {}
                    codec.vae.encoder = torch.compile(encoder, **kw)
                v.update(layout=layout, dtype=str(dtype))
                runs = batches if name in ("eager", "channels_last") else (best_batch(rec),)
                t = time.perf_counter()
                for b in runs:
                    dt, z = timed(b, dtype)
                    if name == "compile" and "first_s" not in v:
                        v["first_s"] = time.perf_counter() - t  # compile + warm-up + timed calls
                    v[str(b)] = {"images_per_s": b / dt}
                    if dev == "cuda":
                        v[str(b)]["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                    if eager_z is None:
                        eager_z = z[:check]
                    v["latent_diff_vs_eager"] = float((z[:check] - eager_z).abs().max())
                    v["latent_diff_vs_fp32"] = float((z[:check] - ref).abs().max())
                    ctx.record("vae", rec)
        except CapReached as exc:
            v["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a variant that fails is a finding; the others still run
            v["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            codec.vae, codec.dtype = fp16_vae, torch.float16
            codec.vae.encoder = encoder
            codec.vae.to(memory_format=torch.contiguous_format)
            if name == "compile":
                torch._dynamo.reset()
        rates = [d["images_per_s"] for k, d in v.items() if k.isdigit()]
        if rates:
            v["best_images_per_s"] = max(rates)
        ctx.record("vae", rec)
    rates = {k: v["best_images_per_s"] for k, v in rec["variants"].items() if "best_images_per_s" in v}
    rec["best"] = max(rates, key=rates.get) if rates else None
    rec["summary"] = [f"VAE encode at {px} px: " + ", ".join(f"{k} {r:.0f} img/s" for k, r in rates.items())
                      + " (target >= 400)"]


def faster(rec: dict, a: str, b: str) -> bool:
    ra, rb = (rec["variants"].get(k, {}).get("best_images_per_s", 0) for k in (a, b))
    return ra > rb


def best_batch(rec: dict) -> int:
    eager = rec["variants"].get("eager", {})
    done = {int(k): d["images_per_s"] for k, d in eager.items() if k.isdigit()}
    return max(done, key=done.get) if done else rec["settings"]["batches"][0]


def profile_layouts(codec, x: torch.Tensor, gens, dev: str) -> dict:
    """torch.profiler's top operators for one encode in each layout (after a warm-up in that layout)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
    out = {}
    for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        codec.vae.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            codec.encode(xi, gens[: len(xi)])
            sync(dev)
            with profile(activities=acts) as prof:
                codec.encode(xi, gens[: len(xi)])
                sync(dev)
        out[layout] = top_kernels(prof, dev)
    codec.vae.to(memory_format=torch.contiguous_format)
    return out
