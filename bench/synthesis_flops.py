"""Synthesis time per image of a d4m-trained generator against what its UNet's FLOPs allow on this CPU.

Issue 25: distilling with a user-trained generator cost about 17 s per image while the shipped one
(``cifar10-taef2``, inside the package) made 4 images/s. This benchmark times d4m's own ``denoise`` (img2img, 50
steps at strength 0.7 = 35 UNet calls, classifier-free guidance: each call on the conditional and unconditional
pair) for the shipped UNet and for other shapes a user may have, and divides each time by the floor its FLOPs
set:

    floor = (UNet FLOPs per image per call, counted by torch.utils.flop_counter) x 35 / (measured fp32 matmul rate)

(times are CPU seconds of one thread, time.process_time: the cores are shared, and wall time would count the
other jobs' share), so a ratio of 1 would be a UNet running at matmul speed; small convolutions and attention on 8x8 latents stay well
above it. Cases: the shipped UNet (fp16 on disk, loaded as fp32 like any generator on the CPU) at its training
size (TAEF2 at 64 px: 32x8x8 latents), batch 8 and batch 1; the same UNet at ``--size 512`` (``distill``'s
default: 64x64 latents, what a user gets by leaving ``--size`` out); the ``wide`` preset at 8x8. Each case is timed
on a few images, the cases interleaved over reps; the median is reported.

    python bench/synthesis_flops.py [--quick | --smoke] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import ROOT, median, mode_args, save_result  # noqa: E402

SHIPPED = Path(str(importlib.resources.files("d4m") / "generators" / "cifar10-taef2"))  # the shipped generator
STEPS, STRENGTH, GUIDANCE, TOKENS = 50, 0.7, 8.0, 32


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """The fp32 matmul rate of this CPU with the current thread count: the best of ``reps`` n x n products, in CPU
    time (on shared cores wall time counts the other jobs too; with one thread CPU time is this job's work; the
    best, as a floor must use the rate the CPU can reach)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        torch.mm(a, b)
        times.append(time.process_time() - t0)
    return 2 * n**3 / min(times) / 1e9


def unet_flops(unet, latent: int, cross: int) -> float:
    """FLOPs of one UNet call on one image's guidance pair (batch 2), per image."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, unet.config.in_channels, latent, latent)
    emb = torch.randn(2, TOKENS, cross)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor([500, 500]), encoder_hidden_states=emb)
    return float(counter.get_total_flops())


def time_denoise(unet, sched, latent: int, cross: int, batch: int, steps: int) -> tuple[float, float]:
    """(CPU, wall) seconds per image of d4m's ``denoise`` at ``steps`` (x ``STRENGTH`` UNet calls), CFG on."""
    from d4m.synthesis.img2img import denoise

    g = [torch.Generator().manual_seed(i) for i in range(batch)]
    init = torch.randn(batch, unet.config.in_channels, latent, latent)
    cond, uncond = torch.randn(batch, TOKENS, cross), torch.randn(batch, TOKENS, cross)
    t0, c0 = time.perf_counter(), time.process_time()
    denoise(unet, sched, init, cond, uncond, strength=STRENGTH, steps=steps, guidance=GUIDANCE, generators=g)
    return (time.process_time() - c0) / batch, (time.perf_counter() - t0) / batch


def cases(args) -> list[dict]:
    from diffusers import UNet2DConditionModel

    from d4m.generator.unet_presets import build_unet
    from d4m.synthesis.generator import load_scheduler

    shipped = UNet2DConditionModel.from_pretrained(SHIPPED / "unet", torch_dtype=torch.float32).eval()
    sched = load_scheduler(str(SHIPPED))
    torch.manual_seed(0)
    wide = build_unet("wide", 32, 8, 384).eval()
    if args.smoke:
        return [dict(name="shipped small, 8x8, batch 2", unet=shipped, sched=sched, latent=8, batch=2)]
    out = [dict(name="shipped small, 8x8 (size 64), batch 8", unet=shipped, sched=sched, latent=8, batch=8),
           dict(name="shipped small, 8x8 (size 64), batch 1", unet=shipped, sched=sched, latent=8, batch=1),
           dict(name="wide preset, 8x8 (size 64), batch 8", unet=wide, sched=sched, latent=8, batch=8),
           dict(name="shipped small, 64x64 (size 512), batch 1", unet=shipped, sched=sched, latent=64, batch=1)]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_args(p)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the cores are shared)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    # timed steps per case: the per-image time is scaled to 50 steps (35 calls); UNet calls cost the same each step
    steps = 4 if args.smoke else (10 if args.quick else 20)
    reps = 1 if (args.smoke or args.quick) else 2
    rate = matmul_gflops()
    rows = []
    with torch.no_grad():
        todo = cases(args)
        for c in todo:
            c["flops"] = unet_flops(c["unet"], c["latent"], c["unet"].config.cross_attention_dim)
            c["times"], c["walls"] = [], []
        for _ in range(reps):  # interleaved: every case sees the same load, rep by rep
            for c in todo:
                n_steps = 2 if c["latent"] >= 32 and not args.smoke else steps  # 64x64 is slow: fewer steps
                calls = int(n_steps * STRENGTH)
                cpu, wall = time_denoise(c["unet"], c["sched"], c["latent"], c["unet"].config.cross_attention_dim,
                                         c["batch"], n_steps)
                c["times"].append(cpu * int(STEPS * STRENGTH) / calls)
                c["walls"].append(wall * int(STEPS * STRENGTH) / calls)
    rate_after = matmul_gflops()
    calls = int(STEPS * STRENGTH)
    for c in todo:
        s = median(c["times"])
        floor = c["flops"] * calls / (max(rate, rate_after) * 1e9)
        rows.append({"case": c["name"], "params_M": sum(x.numel() for x in c["unet"].parameters()) / 1e6,
                     "gflop_per_image_call": c["flops"] / 1e9, "s_per_image_50_steps": s,
                     "wall_s_per_image_50_steps": median(c["walls"]),
                     "images_per_s": 1 / s, "flop_floor_s": floor, "ratio_to_floor": s / floor,
                     "reps": c["times"]})
    base = rows[0]["s_per_image_50_steps"]
    for r in rows:
        r["vs_first"] = r["s_per_image_50_steps"] / base
        print(f"RATIO {r['case']}: {r['s_per_image_50_steps']:.3g} CPU s/image at 50 steps "
              f"(wall {r['wall_s_per_image_50_steps']:.3g}), "
              f"{r['gflop_per_image_call']:.3g} GFLOP/call, {r['ratio_to_floor']:.3g}x its FLOP floor, "
              f"{r['vs_first']:.3g}x the first case")
    print(f"matmul fp32 {rate:.3g} GFLOP/s before, {rate_after:.3g} after ({args.threads} thread(s))")
    import os

    record = {"settings": {"steps": STEPS, "strength": STRENGTH, "guidance": GUIDANCE, "tokens": TOKENS,
                           "timed_steps": steps, "reps": reps, "threads": args.threads},
              "matmul_gflops": [rate, rate_after], "rows": rows}
    if not args.smoke:
        record["load_average"] = os.getloadavg()[0]
        save_result("synthesis_flops" + ("_quick" if args.quick else ""), record)
    return record


if __name__ == "__main__":
    main()
