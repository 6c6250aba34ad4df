"""BENCHMARKS.md's GPU section, rendered from a GPU run's results.json (copied to bench/results/gpu.json).

Without that file the section says so: no GPU figure is ever written that a GPU run did not measure.
"""

from __future__ import annotations

TITLE = "5. GPU run (`bench/gpu_run.py`, real SD v1.5 shapes)"
WHAT = ("What the kit measures (README, 'A prepared GPU run'): SD v1.5-shaped synthesis (860 M-parameter UNet, "
        "random weights, fp16, 4x64x64 latents, PNDM 35 of 50 steps, CFG 8) with d4m's batched `denoise` at batch "
        "1-64 against one `StableDiffusionImg2ImgPipeline` call per image (targets: >= 4x, <= 0.15 s/image); the "
        "SD VAE encoder at 512 px (fp16, channels_last, batch 32/64) and d4m's JPEG loader on 16 cores; the "
        "projected ImageNet-1K IPC 10/50 wall time on 1 and 8 GPUs; a CIFAR-10 generator trained for about 4 "
        "minutes in bf16 with its ResNet-20 classifier check (target >= 70% on 1,000 samples); IPC 10 distilled "
        "with it at strength 0.5 and 0.7.")


def _f(x, spec=".3f") -> str:
    return "-" if x is None else format(x, spec)


def render(r: dict | None) -> list[str]:
    if not r:
        return ["**Not measured: no GPU available yet.** " + WHAT]
    if r.get("smoke"):
        return ["(the results file is from a --smoke run on a CPU: not GPU figures)"]
    v, ph = r.get("versions", {}), r.get("phases", {})
    env = ph.get("environment", {})
    out = [f"GPU: {env.get('gpu')} ({_f(env.get('memory_gib'), '.0f')} GiB), torch {v.get('torch')}, diffusers "
           f"{v.get('diffusers')}, transformers {v.get('transformers')}, CUDA {env.get('cuda')}; run started "
           f"{r.get('started')}, {r.get('total_s')} s in all. Phase status: "
           + ", ".join(f"{k} {p.get('status')}" for k, p in ph.items()) + ".", ""]
    syn = ph.get("synthesis", {})
    if syn.get("official"):
        o = syn["official"]
        out += [f"Synthesis, UNet {_f(syn.get('unet_params_m'), '.0f')} M parameters, max |latent difference| d4m vs "
                f"pipeline (same seeds, {syn.get('settings', {}).get('dtype')}): {_f(syn.get('max_abs_latent_diff'), '.2e')} "
                f"(max |latent| {_f(syn.get('latent_scale'), '.2f')}; one image per call "
                f"{_f(syn.get('max_abs_latent_diff_b1'), '.2e')}; fp32 {_f(syn.get('max_abs_latent_diff_fp32'), '.2e')}).",
                "",
                "| side | batch | s/image | images/s | peak GiB | ratio vs official |", "|---|---|---|---|---|---|",
                f"| official (pipeline, 1 image/call) | 1 | {_f(o['s_per_image'])} | {_f(o['images_per_s'])} | "
                f"{_f(o.get('peak_gib'), '.1f')} | 1 |"]
        for b, d in syn.get("d4m", {}).items():
            if d.get("oom"):
                out.append(f"| d4m `denoise` | {b} | out of memory | | | |")
            else:
                out.append(f"| d4m `denoise` | {b} | {_f(d['s_per_image'])} | {_f(d['images_per_s'])} | "
                           f"{_f(d.get('peak_gib'), '.1f')} | {_f(d['ratio_vs_official'], '.2f')}x |")
        out.append("")
    enc = ph.get("encoding", {})
    for key, d in enc.get("vae", {}).items():
        if "images_per_s" in d:
            out.append(f"- VAE {key.replace('_', ' ')}: {_f(d['images_per_s'], '.1f')} images/s")
    for key in ("loader_32px", "loader_500x375"):
        if key in enc:
            out.append(f"- d4m loader ({key[7:]} JPEG -> 512, {enc[key]['workers']} workers): "
                       f"{_f(enc[key]['images_per_s'], '.0f')} images/s")
    out += [f"- {line}" for line in enc.get("summary", [])[1:]]
    out += render_new(ph)
    for name in ("generator", "distill"):
        out += [f"- {name}: {line}" for line in ph.get(name, {}).get("summary", [])]
    return out


def render_runs(runs: list[dict]) -> list[str]:
    """Every GPU run's results in order (bench/results/gpu.json, gpu-2.json, ...), each under its command line;
    then, until a run has measured them, issue 24's phases marked as not measured."""
    if not runs:
        return render(None) + ["", *NEXT]
    out = []
    for i, r in enumerate(runs, 1):
        if len(runs) > 1:
            out += [f"**Run {i}** (`gpu_run.py {' '.join(r.get('argv', []))}`)", ""]
        out += [*render(r), ""]
    if not any("variants" in r.get("phases", {}) for r in runs if not r.get("smoke")):
        out += [*NEXT, ""]
    return out[:-1]


NOT = "not measured: no GPU lent"
NEXT = [
    "**Issue 24's phases (the next lease's default run): " + NOT + ".** What they will fill in, each checked by "
    "`--smoke` in CI:", "",
    "| phase | figure | value |", "|---|---|---|",
    f"| variants | SD v1.5 synthesis s/image at batch 16 (35 steps, CFG 8, decode included): eager fp16, "
    f"channels_last, bf16, torch.compile, reduce-overhead (CUDA graphs), max-autotune; compile time apart; max "
    f"difference vs eager and vs fp32; ratio vs the official pattern (target <= 0.12 s/image) | {NOT} |",
    f"| variants | the GPU default by the rule (README, 'A prepared GPU run') | {NOT} (the default stays eager) |",
    f"| vae | SD VAE encoder images/s at 512 px, batch 32-128, in the same variants (target >= 400); profiler top "
    f"kernels, channels_last vs contiguous | {NOT} |",
    f"| labels | ResNet-18 relabel and student images/s at 224 px through d4m's stream (CPU side and GPU side "
    f"apart); ImageNet-1K IPC 10 / 50 hours for 300 epochs | {NOT} |",
    f"| genspeed | generator optimiser steps/min: batch 128 vs 512, eager vs torch.compile vs CUDA graphs | {NOT} |",
    f"| projection | ImageNet-1K IPC 10 / 50 end to end (prototypes + synthesis + labels + one student) on 1 and "
    f"8 GPUs, today and with the best variants (target IPC 10 <= 3 h on 8) | {NOT} |"]


def render_new(ph: dict) -> list[str]:
    """Issue 24's phases of one run, where it ran them."""
    out = []
    var = ph.get("variants", {})
    if var.get("variants"):
        out += ["", f"Synthesis variants (batch {var['settings']['batch']}, official pattern "
                f"{_f(var.get('official_s_per_image'))} s/image):", "",
                "| variant | dtype, layout | s/image | x eager | x official | compile s | latents vs eager | "
                "images vs fp32 (0-255) | one forward vs fp32 |", "|---|---|---|---|---|---|---|---|---|"]
        for name, v in var["variants"].items():
            if "s_per_image" not in v:
                out.append(f"| {name} | {v.get('skipped') or v.get('error', 'not run')} | | | | | | | |")
                continue
            out.append(f"| {name} | {v['dtype'][6:]}, {v['layout']} | {_f(v['s_per_image'])} | "
                       f"{_f(v['ratio_vs_eager'], '.2f')} | {_f(v['ratio_vs_official'], '.2f')} | "
                       f"{_f(v.get('compile_s'), '.0f')} | {_f(v['latent_diff_vs_eager'], '.2g')} | "
                       f"{_f(v['image_diff_vs_fp32_255'], '.1f')} | {_f(v['fwd_diff_vs_fp32'], '.2g')} |")
        rec = var.get("recommendation", {})
        out += ["", f"GPU default by the rule: **{rec.get('default')}** ({rec.get('rule', '')}); verdicts: "
                + "; ".join(f"{k}: {w}" for k, w in rec.get("verdicts", {}).items()), ""]
    for name in ("vae", "labels", "genspeed", "projection"):
        out += [f"- {name}: {line}" for line in ph.get(name, {}).get("summary", [])]
    prof = ph.get("vae", {}).get("profile", {})
    for layout in ("contiguous", "channels_last"):
        if isinstance(prof.get(layout), list):
            out.append(f"- VAE encoder top kernels, {layout}: " + "; ".join(
                f"{k['name'][:60]} {k['share']:.0%}" for k in prof[layout][:5]))
    return out
