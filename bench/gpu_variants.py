"""GPU run phase "variants": d4m's batched synthesis at SD v1.5's shape in several builds of the same UNet, side by
side, each checked against eager fp16 and an fp32 reference, and the rule that may make one of them d4m's GPU
default (``recommend``; its ``build`` is what ``d4m.synthesis.builds.GPU_DEFAULT`` would be set to).

The models are gpu_sd's (random weights, SD v1.5's configs, fp16), the work is gpu_sd's (PNDM 35 of 50 steps,
CFG 8, the paper's negative prompt, one CPU generator per image, the fp16 VAE decode included in every time).
Variants, cheapest first, then by value (each under its own cap, so a slow compile costs only its own time):

- ``eager``: what d4m does today (fp16, contiguous); every other variant is compared with it;
- ``channels_last``: the same in NHWC; the compiled variants below use whichever of the two layouts was faster;
- ``bf16``: eager in bfloat16 (weights rounded from the fp16 ones);
- ``compile``: ``torch.compile`` (inductor, default mode); first call (compile) timed apart from steady state;
- ``reduce-overhead``: ``torch.compile(mode="reduce-overhead")``: inductor plus CUDA graphs;
- ``max-autotune``: ``torch.compile(mode="max-autotune")`` (Triton GEMM/conv autotuning: the slowest compile).

On the CPU (``--smoke``) the variants that need CUDA (CUDA graphs, Triton autotuning) are skipped with the reason
recorded, and so is ``compile`` unless ``--smoke-compile`` is given (dynamo alone needs about a minute to capture
even the tiny UNet on a busy CPU; with the flag it runs on dynamo's ``eager`` backend, graph capture only, since
inductor's CPU code generation would take minutes and time nothing of interest); the rest run at tiny shape.
"""

from __future__ import annotations

import copy
import time

import torch

from gpu_kit import CapReached, NEGATIVE, capped
from gpu_sd import PROMPTS, build_models, settings, sync

ORDER = ("eager", "channels_last", "bf16", "compile", "reduce-overhead", "max-autotune")
CAPS = {"eager": 35, "channels_last": 25, "bf16": 25, "compile": 120, "reduce-overhead": 80, "max-autotune": 150}
NEEDS_CUDA = {"reduce-overhead": "CUDA graphs need a CUDA device",
              "max-autotune": "max-autotune tunes Triton GPU kernels: needs a CUDA device"}
SMOKE_COMPILE = "smoke: dynamo takes about a minute to capture the UNet on a CPU (--smoke-compile runs it)"
MODES = {"compile": "default", "reduce-overhead": "reduce-overhead", "max-autotune": "max-autotune"}
# the rule for a new GPU default (README, 'A prepared GPU run'): one UNet forward no farther from fp32 than twice
# eager fp16's own distance, the 35-step latents and the decoded images no farther from fp32 than eager fp16's
# (25% slack, plus one grey level for the images), and at least 5% faster than eager in steady state
FWD_SLACK, LATENT_SLACK, IMAGE_SLACK_255, MIN_GAIN = 2.0, 1.25, 1.0, 0.05


def amax(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def eligible(v: dict, eager: dict) -> tuple[bool, str]:
    """Whether variant ``v`` matches eager fp16 within fp16 tolerance (the measured records of both)."""
    if "s_per_image" not in v or "fwd_diff_vs_fp32" not in v:
        return False, "not measured"
    checks = [("one forward vs fp32", v["fwd_diff_vs_fp32"], FWD_SLACK * eager["fwd_diff_vs_fp32"]),
              ("latents vs fp32", v["latent_diff_vs_fp32"], LATENT_SLACK * eager["latent_diff_vs_fp32"]),
              ("images vs fp32 (0-255)", v["image_diff_vs_fp32_255"],
               LATENT_SLACK * eager["image_diff_vs_fp32_255"] + IMAGE_SLACK_255)]
    for what, got, limit in checks:
        if got > limit:
            return False, f"{what} {got:.3g} > {limit:.3g}"
    return True, "within fp16 tolerance"


def recommend(variants: dict) -> dict:
    """The fastest variant that matches eager within fp16 tolerance and beats it by MIN_GAIN; else keep eager."""
    eager = variants.get("eager", {})
    if "s_per_image" not in eager:
        return {"default": "eager", "why": "eager not measured: nothing to compare with"}
    verdicts, best = {}, ("eager", eager["s_per_image"])
    for name, v in variants.items():
        if name == "eager":
            continue
        ok, why = eligible(v, eager)
        verdicts[name] = why
        if ok and v["s_per_image"] < best[1] and v["s_per_image"] <= (1 - MIN_GAIN) * eager["s_per_image"]:
            best = (name, v["s_per_image"])
    chosen = variants[best[0]]
    build = {"compile": MODES.get(best[0], "no"), "channels_last": chosen.get("layout") == "channels_last"}
    return {"default": best[0], "build": build, "dtype": chosen.get("dtype", "torch.float16"),
            "speedup_vs_eager": eager["s_per_image"] / best[1], "verdicts": verdicts,
            "rule": f"one forward <= {FWD_SLACK}x eager fp16's distance to fp32; latents and images <= "
                    f"{LATENT_SLACK}x eager's (+{IMAGE_SLACK_255} grey level); >= {MIN_GAIN:.0%} faster than eager"}


def phase_variants(ctx, rec: dict) -> None:
    from diffusers import StableDiffusionImg2ImgPipeline
    from diffusers.utils import logging as dlog

    from d4m.seeding import cpu_generator
    from d4m.synthesis.generator import Generator, embed_prompts
    from d4m.synthesis.img2img import denoise

    s, dev, smoke = settings(ctx.smoke), ctx.device, ctx.smoke
    batch, reps = (2, 1) if smoke else (16, 2)
    wanted = ctx.args.variants.split(",") if getattr(ctx.args, "variants", None) else list(ORDER)
    dlog.disable_progress_bar()
    unet, vae, text, tokenizer, sched = build_models(s, dev, ctx.work)
    steps, lat = (4 if smoke else s["steps"]), s["pixels"] // 8  # smoke: 2 denoising steps (fp16 is slow on a CPU)
    rec["settings"] = {"batch": batch, "reps": reps, "steps": steps, "denoising_steps": int(steps * 0.7), "cfg": 8.0,
                       "latent": [4, lat, lat], "device": dev, "decode_included": True, "caps_s": CAPS}
    protos = torch.randn(batch, 4, lat, lat, generator=torch.Generator().manual_seed(0))
    gen = Generator(unet, text, tokenizer, sched, "random SD v1.5", {})
    with torch.no_grad():
        uncond = embed_prompts(gen, [NEGATIVE], dev)
        cond = torch.cat([embed_prompts(gen, [PROMPTS[c]], dev) for c in range(4)])
    idx = list(range(batch))
    sf = vae.config.scaling_factor

    @torch.no_grad()
    def decode(z):  # the fp16 VAE for every variant, in the 0-255 scale of the written PNGs
        return torch.cat([((vae.decode(c.half() / sf).sample.float() + 1) * 127.5).clamp(0, 255) for c in z.split(8)])

    @torch.no_grad()
    def synth(unet_, dtype, ids):
        z = denoise(unet_, sched, protos[ids].to(dev, dtype), cond[[i % 4 for i in ids]].to(dtype),
                    uncond.expand(len(ids), -1, -1).to(dtype), strength=0.7, steps=steps, guidance=8.0,
                    generators=[cpu_generator(0, "synthesis", i % 4, i) for i in ids])
        images = decode(z)
        sync(dev)
        return z, images

    # one UNet forward at the timed shape (CFG doubles the batch), the first denoising step's timestep
    x1 = torch.randn(2 * batch, 4, lat, lat, generator=torch.Generator().manual_seed(1)).to(dev)
    emb1 = torch.cat([uncond.expand(batch, -1, -1), cond[[i % 4 for i in idx]]])
    t1 = torch.tensor(int(sched.config.num_train_timesteps * 0.7), device=dev)

    @torch.no_grad()
    def forward(unet_, dtype):
        out = unet_(x1.to(dtype), t1, encoder_hidden_states=emb1.to(dtype), return_dict=False)[0].float()
        sync(dev)
        return out.clone()  # a CUDA graph's output is overwritten by its next replay

    # the fp32 reference: the same fp16 weights, upcast (two images, and the one forward)
    unet32 = copy.deepcopy(unet).float()
    t = time.perf_counter()
    ref_fwd = forward(unet32, torch.float32)
    ref_z, ref_img = synth(unet32, torch.float32, idx[:2])
    rec["fp32_reference_s"] = time.perf_counter() - t
    del unet32
    if dev == "cuda":
        torch.cuda.empty_cache()
    # the official pattern for two images (a pipeline call per image), for the ratio this run measures itself
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for rep in range(1 if smoke else 2):  # the first call warms up
            t = time.perf_counter()
            for i in (0, 1):
                z = pipe(prompt=PROMPTS[i % 4], image=protos[i : i + 1].to(dev, torch.float16), strength=0.7,
                         guidance_scale=8.0, num_inference_steps=steps, negative_prompt=NEGATIVE,
                         output_type="latent", generator=cpu_generator(0, "synthesis", i % 4, i)).images
                decode(z)
            sync(dev)
    rec["official_s_per_image"] = (time.perf_counter() - t) / 2
    del pipe
    rec["variants"], eager_out = {}, {}
    for name in ORDER:
        if name not in wanted:
            continue
        v = rec["variants"][name] = {"cap_s": CAPS[name] * ctx.args.deadline_scale}
        if name in NEEDS_CUDA and dev != "cuda":
            v["skipped"] = NEEDS_CUDA[name]
            continue
        if name in MODES and smoke and not getattr(ctx.args, "smoke_compile", False):
            v["skipped"] = SMOKE_COMPILE
            continue
        if name != "eager" and not eager_out:
            v["skipped"] = "eager was not measured"
            continue
        try:
            with capped(v["cap_s"], f"variant {name}"):
                run_variant(name, v, rec, unet, forward, synth, idx, reps, smoke, dev)
        except CapReached as exc:
            v["error"] = str(exc)
        except torch.OutOfMemoryError:
            v["error"] = "out of memory"
        except Exception as exc:  # noqa: BLE001 - a variant that fails is a finding; the others still run
            v["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            unet.to(memory_format=torch.contiguous_format)
            if name in MODES:
                torch._dynamo.reset()
            if dev == "cuda":
                torch.cuda.empty_cache()
        out = v.pop("_out", None)
        if out is not None:
            z, images, fwd = out
            if name == "eager":
                eager_out.update(z=z, images=images, fwd=fwd)
            v["fwd_diff_vs_fp32"], v["fwd_scale"] = amax(fwd, ref_fwd), float(ref_fwd.abs().max())
            v["fwd_diff_vs_eager"] = amax(fwd, eager_out["fwd"])
            v["latent_diff_vs_eager"] = amax(z, eager_out["z"])
            v["latent_diff_vs_fp32"], v["latent_scale"] = amax(z[:2], ref_z), float(ref_z.float().abs().max())
            v["image_diff_vs_eager_255"] = amax(images, eager_out["images"])
            v["image_diff_vs_fp32_255"] = amax(images[:2], ref_img)
            v["ratio_vs_eager"] = rec["variants"]["eager"]["s_per_image"] / v["s_per_image"]
            v["ratio_vs_official"] = rec["official_s_per_image"] / v["s_per_image"]
        rec["recommendation"] = recommend(rec["variants"])
        ctx.record("variants", rec)
    rec["summary"] = summary_lines(rec)


def run_variant(name, v, rec, unet, forward, synth, idx, reps, smoke, dev) -> None:
    """Build variant ``name`` of the fp16 ``unet``, time its first call and steady state, keep its outputs."""
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    model, layout = unet, "contiguous"
    if name in MODES or name == "channels_last":
        cl, ctg = (rec["variants"].get(k, {}).get("s_per_image", float("inf")) for k in ("channels_last", "eager"))
        layout = "channels_last" if name == "channels_last" or cl < ctg else "contiguous"
        if layout == "channels_last":
            unet.to(memory_format=torch.channels_last)
    if name == "bf16":
        model = copy.deepcopy(unet).to(torch.bfloat16)
    if name in MODES:
        backend = "eager" if smoke else "inductor"  # smoke: dynamo's graph capture only (see the module docstring)
        kw = {"backend": backend} if smoke else {"mode": MODES[name]}
        model = torch.compile(unet, fullgraph=False, **kw)
        v["compile"] = {"backend": backend, "mode": None if smoke else MODES[name]}
    v.update(dtype=str(dtype), layout=layout)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    fwd = forward(model, dtype)  # for a compiled variant: the compile, at the timed shape
    v["first_forward_s"] = time.perf_counter() - t
    t = time.perf_counter()
    synth(model, dtype, idx)  # warm-up (a compiled variant's CUDA graphs are recorded here)
    v["first_call_s"] = time.perf_counter() - t
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        z, images = synth(model, dtype, idx)
        times.append(time.perf_counter() - t)
    dt = min(times)
    v.update(s_per_image=dt / len(idx), images_per_s=len(idx) / dt, steady_call_s=times)
    if name in MODES:  # compile time: what the first forward and call cost beyond steady state
        v["compile_s"] = v["first_forward_s"] + v["first_call_s"] - dt
    if dev == "cuda":
        v["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    v["_out"] = (z, images, forward(model, dtype))


def summary_lines(rec: dict) -> list[str]:
    lines = []
    for name, v in rec.get("variants", {}).items():
        if "s_per_image" in v:
            extra = f", compile {v['compile_s']:.0f} s" if "compile_s" in v else ""
            lines.append(f"{name} ({v['dtype'][6:]}, {v['layout']}): {v['s_per_image']:.3f} s/img, "
                         f"{v['ratio_vs_eager']:.2f}x eager, {v['ratio_vs_official']:.2f}x official{extra}; "
                         f"latents vs eager {v['latent_diff_vs_eager']:.2g}, images vs fp32 "
                         f"{v['image_diff_vs_fp32_255']:.1f}/255 (eager {rec['variants']['eager']['image_diff_vs_fp32_255']:.1f})")
        else:
            lines.append(f"{name}: {v.get('skipped') or v.get('error') or 'not run'}")
    r = rec.get("recommendation", {})
    lines.append(f"GPU default by the rule: {r.get('default')} ({r.get('speedup_vs_eager', 1):.2f}x eager)")
    return lines
