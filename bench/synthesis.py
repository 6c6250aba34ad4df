"""Synthesis throughput: d4m's batched ``denoise`` vs the official one-image-per-call img2img pipeline.

Both sides use the same random-weight SD1.5-shaped model (SD1.5's UNet block structure, widths scaled down on
CPU), the same settings (PNDM, 50 steps at strength 0.7 = 35 denoising steps, CFG 8, negative prompt) and do the
same work per image: text encoding, the img2img loop from a given latent, VAE decode.

* baseline (official D4M pattern): diffusers' stock ``StableDiffusionImg2ImgPipeline`` called once per image,
  batch 1, prompt and negative prompt re-encoded by the pipeline at every call, the prototype latent passed as
  ``image`` (4-channel input is taken as latents), ``output_type="latent"`` then ``vae.decode``.
* d4m: ``load_generator`` + ``embed_prompts`` once per class (and once for the negative prompt) + ``denoise`` on
  batches of ``--batch`` images + the VAE codec's decode.

Reps are interleaved (baseline, d4m, baseline, d4m, ...) and the median of per-rep ratios is reported.
``--gpu``: SD1.5's real UNet/VAE/CLIP sizes with random weights, 64x64 latents, fp16, on CUDA.

    python bench/synthesis.py [--quick | --smoke | --gpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import machine, make_sd_model, median, mode_args, ratio_line, save_result  # noqa: E402

NEGATIVE = "cartoon, anime, painting"
CLASSES = ["tench, tinca tinca", "goldfish", "great white shark", "tiger shark"]


def settings(args) -> dict:
    if args.gpu:
        return dict(latent=64, images=16, batch=8, reps=3, steps=50, strength=0.7, widths=None)
    if args.smoke:
        return dict(latent=8, images=2, batch=2, reps=1, steps=4, strength=0.5, widths=(8, 16, 16, 16))
    if args.quick:
        return dict(latent=16, images=4, batch=4, reps=1, steps=50, strength=0.7, widths=(32, 64, 64, 64))
    return dict(latent=16, images=8, batch=8, reps=2, steps=50, strength=0.7, widths=(32, 64, 64, 64))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_args(p)
    p.add_argument("--gpu", action="store_true", help="SD1.5 sizes, 64x64 latents, fp16 on CUDA")
    p.add_argument("--batch", type=int, help="d4m batch size (default 8)")
    p.add_argument("--images", type=int, help="images per side per rep")
    p.add_argument("--reps", type=int)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the machine's cores are shared, 1 thread is the stable "
                        "measurement)")
    args = p.parse_args(argv)
    s = settings(args)
    for key in ("batch", "images", "reps"):
        if getattr(args, key):
            s[key] = getattr(args, key)
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("synthesis --gpu: no CUDA device visible to torch (torch.cuda.is_available() is False); "
                             "run the CPU benchmark without --gpu, or run this on a machine with an NVIDIA GPU")
        device, dtype = torch.device("cuda"), torch.float16
    else:
        torch.set_num_threads(args.threads)
        device, dtype = torch.device("cpu"), torch.float32

    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline
    from diffusers.utils import logging as dlog

    from d4m.codec.vae import VAECodec
    from d4m.seeding import cpu_generator
    from d4m.synthesis.generator import embed_prompts, load_generator
    from d4m.synthesis.img2img import denoise

    dlog.disable_progress_bar()
    tmp = tempfile.TemporaryDirectory(prefix="d4m-bench-synth-")
    model = make_sd_model(Path(tmp.name) / "sd", full_sd15=args.gpu,
                          **({"widths": s["widths"]} if s["widths"] else {}))
    gen = load_generator(str(model), device=device, dtype=dtype)
    codec = VAECodec(str(model), device=device, dtype=dtype)
    vae = AutoencoderKL.from_pretrained(str(model), subfolder="vae", torch_dtype=dtype).to(device).eval()
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=gen.text_encoder, tokenizer=gen.tokenizer,
                                          unet=gen.unet, scheduler=gen.scheduler, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    n, b = s["images"], s["batch"]
    per_class = max(1, n // 2)  # two classes per rep: each class's prompt is embedded once by d4m
    g0 = torch.Generator().manual_seed(0)
    protos = torch.randn(n, 4, s["latent"], s["latent"], generator=g0)
    jobs = [(i // per_class % len(CLASSES), i) for i in range(n)]

    def baseline(jobs=jobs):
        out = []
        for c, i in jobs:
            lat = pipe(prompt=CLASSES[c], image=protos[i:i + 1].to(device, dtype), strength=s["strength"],
                       guidance_scale=8.0, num_inference_steps=s["steps"], negative_prompt=NEGATIVE,
                       output_type="latent", generator=cpu_generator(0, "synthesis", c, i)).images
            with torch.no_grad():
                out.append(vae.decode(lat / vae.config.scaling_factor).sample)
        sync(device)
        return torch.cat(out)

    def d4m(jobs=jobs, b=b):
        uncond = embed_prompts(gen, [NEGATIVE], device).to(dtype)
        cache, out = {}, []
        for start in range(0, len(jobs), b):
            batch = jobs[start:start + b]
            for c in {c for c, _ in batch} - cache.keys():
                cache[c] = embed_prompts(gen, [CLASSES[c]], device).to(dtype)[0]
            cond = torch.stack([cache[c] for c, _ in batch])
            init = protos[[i for _, i in batch]].to(device, dtype)
            lat = denoise(gen.unet, gen.scheduler, init, cond, uncond.expand(len(batch), -1, -1),
                          strength=s["strength"], steps=s["steps"], guidance=8.0,
                          generators=[cpu_generator(0, "synthesis", c, i) for c, i in batch])
            out.append(codec.decode(lat.float()) * 2 - 1)
        sync(device)
        return torch.cat(out)

    # warm-up (two images each) and a check that both sides compute the same images
    few = [jobs[0], jobs[-1]]
    with torch.no_grad():
        ref, ours = baseline(few), d4m(few, 2)
    same = float((ref.float().clamp(-1, 1) - ours.float()).abs().max())  # the codec clamps to [0, 1]
    print(f"max |baseline - d4m| over the decoded images: {same:.2e} (same seeds, same work)")

    times = {"baseline": [], "d4m": []}
    cpu = {"baseline": [], "d4m": []}
    mem = {"baseline": 0, "d4m": 0}
    for rep in range(s["reps"]):
        for name, fn in (("baseline", baseline), ("d4m", d4m)):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            if device.type == "cuda":
                mem[name] = max(mem[name], torch.cuda.max_memory_allocated(device))
        print(f"rep {rep}: baseline {n / times['baseline'][-1]:.3f} img/s ({cpu['baseline'][-1] / n:.2f} CPU s/img), "
              f"d4m {n / times['d4m'][-1]:.3f} img/s ({cpu['d4m'][-1] / n:.2f} CPU s/img)")
    ratios = [tb / td for tb, td in zip(times["baseline"], times["d4m"])]
    r = median(ratios)
    cpu_ratios = [tb / td for tb, td in zip(cpu["baseline"], cpu["d4m"])]
    rc = median(cpu_ratios)
    res = {
        "settings": {**{k: v for k, v in s.items() if k != "widths"}, "unet_widths": s["widths"] or "SD1.5",
                     "device": str(device), "dtype": str(dtype), "cfg": 8.0, "threads": torch.get_num_threads(),
                     "denoising_steps": int(s["steps"] * s["strength"])},
        "baseline_img_s": n / median(times["baseline"]), "d4m_img_s": n / median(times["d4m"]),
        "baseline_s_per_img": median(times["baseline"]) / n, "d4m_s_per_img": median(times["d4m"]) / n,
        "ratios": ratios, "ratio": r, "cpu_ratios": cpu_ratios, "cpu_ratio": rc,
        "baseline_cpu_s_per_img": median(cpu["baseline"]) / n, "d4m_cpu_s_per_img": median(cpu["d4m"]) / n, "max_abs_diff": same, "target": ">= 3x", "met": r >= 3.0,
    }
    if device.type == "cuda":
        res["baseline_max_mem_gib"] = mem["baseline"] / 2**30
        res["d4m_max_mem_gib"] = mem["d4m"] / 2**30
        print(f"max memory allocated: baseline {res['baseline_max_mem_gib']:.2f} GiB, d4m {res['d4m_max_mem_gib']:.2f} GiB")
    print(f"baseline {res['baseline_s_per_img']:.3f} s/img, d4m {res['d4m_s_per_img']:.3f} s/img "
          f"(batch {b}, {n} images x {s['reps']} reps)")
    print(ratio_line("synthesis images/s (wall) d4m / official", r, ">= 3x", r >= 3.0))
    if device.type == "cpu":
        print(ratio_line("synthesis CPU-time per image official / d4m", rc, ">= 3x", rc >= 3.0))
    if not args.smoke:
        save_result("synthesis_gpu" if args.gpu else ("synthesis_quick" if args.quick else "synthesis"), res)
    tmp.cleanup()
    return res


if __name__ == "__main__":
    main()
