"""Render BENCHMARKS.md from bench/results/*.json (written by the benchmarks). Only measured numbers appear."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load(name: str, quick: bool) -> dict | None:
    for stem in ([f"{name}_quick", name] if quick else [name, f"{name}_quick"]):
        path = HERE / "results" / f"{stem}.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _run_order(path: Path) -> int:
    """gpu.json is the first GPU run, gpu-2.json the second, ..."""
    tail = path.stem.partition("-")[2]
    return int(tail) if tail.isdigit() else 1


def _yes(flag) -> str:
    return "n/a" if flag is None else ("yes" if flag else "**no**")


def _mib(b) -> str:
    return f"{b / 2**20:,.2f} MiB"


def synthesis(r: dict) -> list[str]:
    s = r["settings"]
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}", "",
            f"Settings: UNet widths {s['unet_widths']} (SD1.5 block structure), latents {s['latent']}x{s['latent']}, "
            f"{s['denoising_steps']} denoising steps (PNDM, 50 steps x strength {s['strength']}), CFG {s['cfg']}, "
            f"{s['images']} images per side per rep, d4m batch {s['batch']}, {s['reps']} interleaved reps, "
            f"{s['threads']} torch thread(s), {s['device']} {s['dtype']}. Max |difference| of the decoded images "
            f"(same seeds): {r['max_abs_diff']:.1e}.", "",
            "| measure | d4m (batched denoise) | official (pipeline, 1 image/call) | ratio | target | met? |",
            "|---|---|---|---|---|---|",
            f"| images/s (wall) | {r['d4m_img_s']:.3f} | {r['baseline_img_s']:.3f} | {r['ratio']:.2f}x | >= 3x | "
            f"{_yes(r['ratio'] >= 3)} |"]
    if "cpu_ratio" in r:
        rows.append(f"| CPU s/image | {r['d4m_cpu_s_per_img']:.3f} | {r['baseline_cpu_s_per_img']:.3f} | "
                    f"{r['cpu_ratio']:.2f}x | >= 3x | {_yes(r['cpu_ratio'] >= 3)} |")
    if "d4m_max_mem_gib" in r:
        rows.append(f"| s/image | {r['d4m_s_per_img']:.3f} | {r['baseline_s_per_img']:.3f} | | | |")
        rows.append(f"| max_memory_allocated | {r['d4m_max_mem_gib']:.2f} GiB | {r['baseline_max_mem_gib']:.2f} GiB "
                    f"| | | |")
    rows += ["", "Per-rep wall ratios: " + ", ".join(f"{x:.2f}" for x in r["ratios"])
             + ("; CPU ratios: " + ", ".join(f"{x:.2f}" for x in r["cpu_ratios"]) if "cpu_ratios" in r else "")]
    return rows


def kmeans(r: dict) -> list[str]:
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}", "",
            f"Per class: {r['configs'][0]['points']} latents of {r['configs'][0]['dim']} float32 values (mixture of "
            f"Gaussians), {r['configs'][0]['classes']} classes (independent draws) per configuration, "
            f"{r['threads']} thread(s). Times are medians per class; ratios are medians of per-class ratios. "
            "Inertia: float64, all points, the same function for every method.", "",
            "| IPC | km_expand (buffer) | d4m mode | d4m s (wall / CPU) | sklearn s (wall / CPU) | speed-up wall | "
            "speed-up CPU | inertia d4m/sklearn | target | met? |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in r["configs"]:
        for mode in ("online", "full"):
            rows.append(f"| {c['ipc']} | {c['km_expand']} ({c['buffer']}) | {mode} | {c[mode + '_s']:.3f} / "
                        f"{c[mode + '_cpu_s']:.3f} | {c['sklearn_s']:.3f} / {c['sklearn_cpu_s']:.3f} | "
                        f"{c[mode + '_speedup']:.2f}x | {c[mode + '_cpu_speedup']:.2f}x | "
                        f"{c[mode + '_inertia_ratio']:.4f} | >= 10x at <= 1.0 | {_yes(c[mode + '_met'])} |")
    return rows


def storage(r: dict) -> list[str]:
    p, l = r["prototypes"], r["labels"]
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}", "",
            f"Prototypes {p['shape']} (CIFAR-10 IPC 10 at the paper's 512x512 encode):", "",
            "| file | bytes | ratio vs official JSON | target | met? |", "|---|---|---|---|---|",
            f"| official float64 JSON | {p['json_bytes']:,} | 1x | | |",
            f"| d4m prototypes.safetensors fp32 | {p['fp32_bytes']:,} | {p['fp32_ratio']:.2f}x | >= 8x | "
            f"{_yes(p['fp32_ratio'] >= 8)} |",
            f"| d4m prototypes.safetensors fp16 | {p['fp16_bytes']:,} | {p['fp16_ratio']:.2f}x | >= 8x | "
            f"{_yes(p['fp16_ratio'] >= 8)} |", "",
            f"fp32 holds the JSON's numbers exactly: {p['fp32_exact']}; fp16 max relative error "
            f"{p['fp16_max_rel_err']:.1e}.", "",
            f"Soft labels for one stream: {l['images']:,} images (ImageNet IPC 10), {l['classes']} classes, "
            f"{l['epochs']} epochs, batch {l['batch']}:", "",
            "| storage | bytes | bytes / image-epoch | ratio vs FKD-style | target | met? |", "|---|---|---|---|---|---|",
            f"| FKD/SRe2L-style: torch.save per batch per epoch, fp16 logits + crop/flip/mix params "
            f"({l['fkd_files']} files) | {l['fkd_bytes']:,} | {l['fkd_per_image_epoch']:.1f} | 1x | | |"]
    for key in sorted(k[:-6] for k in l if k.endswith("_ratio")):
        target = ">= 20x" if key.startswith("top") else "-"
        met = _yes(l[key + "_ratio"] >= 20) if key.startswith("top") else "n/a"
        rows.append(f"| d4m LabelStore {key} | {l[key + '_bytes']:,} | {l[key + '_per_image_epoch']:.1f} | "
                    f"{l[key + '_ratio']:.1f}x | {target} | {met} |")
    a = r.get("accuracy")
    if a and not a.get("skipped"):
        rows += ["", f"Accuracy cost of top-k (CIFAR-10, 10 real images/class, ResNet-20 teacher, ConvNet-W128 "
                     f"student, {a['epochs']} epochs, {a['seeds']} seed(s), {a['val_images']} test images):", "",
                 "| stored labels | top-1 % (last epoch, mean over seeds) | label bytes |", "|---|---|---|",
                 f"| full fp16 | {a['full_top1']} | {a['full_label_store'].get('bytes'):,} |",
                 f"| top-3 | {a['top3_top1']} | {a['top3_label_store'].get('bytes'):,} |", "",
                 f"Change with top-3: {a.get('top1_delta', float('nan')):+.2f} points."]
    return rows


def memory(r: dict) -> list[str]:
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}", "",
            f"`d4m prototypes` in a subprocess per run, CIFAR-10 JPEGs, {r['classes']} classes, --size {r['size']}, "
            f"--ipc {r['ipc']}, random-weight SD-shaped VAE, --workers 0; peak RSS from os.wait4.", "",
            "| k-means mode | scale | images | peak RSS | all latents (if held) | time s |", "|---|---|---|---|---|---|"]
    for run in r["runs"]:
        rows.append(f"| {run['mode']} | {run['scale']}x | {run['images']:,} | {_mib(run['peak_rss_bytes'])} | "
                    f"{_mib(run['all_latents_bytes'])} | {run['seconds']:.0f} |")
    rows += ["", "| k-means mode | peak 2x / 1x | peak 4x / 1x | target | met? |", "|---|---|---|---|---|"]
    for mode in ("online", "full"):
        if f"{mode}_ratio_4x" in r:
            ok = r[f"{mode}_ratio_4x"] <= 1.05 and r[f"{mode}_ratio_2x"] <= 1.05
            rows.append(f"| {mode} | {r[f'{mode}_ratio_2x']:.3f}x | {r[f'{mode}_ratio_4x']:.3f}x | "
                        f"{'flat (<= 1.05x)' if mode == 'online' else 'none (caches a class by design)'} | "
                        f"{_yes(ok) if mode == 'online' else 'n/a'} |")
    return rows


def synthesis_flops(r: dict) -> list[str]:
    s = r["settings"]
    load = r.get("load_average")
    where = f"load average {load:.1f} on {r['machine']['cores']} cores" if load else "a loaded machine"
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}", "",
            f"d4m's `denoise` (img2img, {s['steps']} steps at strength {s['strength']} = "
            f"{int(s['steps'] * s['strength'])} UNet calls, CFG {s['guidance']:g} on a {s['tokens']}-token prompt) on "
            f"32-channel latents, {s['threads']} thread, timed over {s['timed_steps']} steps (64x64: 2) and scaled "
            f"to {s['steps']}, {s['reps']} rep(s). Seconds are CPU time of the one thread; wall time beside it shows "
            f"the load ({where}). "
            f"FLOP floor = FLOPs x calls / the best fp32 matmul rate "
            f"({max(r['matmul_gflops']):.1f} GFLOP/s, measured before and after).", "",
            "| case | UNet M params | GFLOP per image per call | CPU s/image | wall s/image | x FLOP floor | "
            "x first row |", "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        rows.append(f"| {x['case']} | {x['params_M']:.2f} | {x['gflop_per_image_call']:.3g} | "
                    f"{x['s_per_image_50_steps']:.3g} | {x['wall_s_per_image_50_steps']:.3g} | "
                    f"{x['ratio_to_floor']:.2f}x | {x['vs_first']:.2f}x |")
    return rows


def main_job(r: dict) -> list[str]:
    s, p, st, pr = r["settings"], r["parts"], r["stages"], r["projection_2_cores_50k"]
    per_img = {"read + resize a JPEG": p["load_s"], "TAEF2 encoder": p["encode_s"],
               f"UNet, {s['denoising_steps']} guided steps": s["denoising_steps"] * p["unet_step_s"],
               "TAEF2 decoder": p["decode_s"]}
    rows = [f"Command: `{r['command']}` — {r['machine']['date']}; {s['threads']} torch thread, measured on a loaded "
            f"machine (load average {r['load_avg']:.1f} on {r['machine']['cores']} cores: other jobs held the cores). "
            "So the rates below are process CPU seconds (what the job costs on a core of its own; the minimum of "
            "repeats for the parts); wall times are given beside them.", "",
            f"The README's main job (`--preset {s['preset']}`, {s['size']} px, guidance {s['guidance']:g}) on "
            f"{s['images']:,} training JPEGs from ../shared, {s['synthesised']} images synthesised:", "",
            "| stage | CPU time | images per CPU second | wall (loaded) |", "|---|---|---|---|",
            f"| prototypes (read, encode, k-means) | {st['prototypes']['cpu_s']:.1f} s | "
            f"{st['prototypes']['images_per_cpu_s']:.1f} | {st['prototypes']['wall_s']:.0f} s |",
            f"| synthesis ({s['denoising_steps']} UNet steps with guidance, decode, PNG) | "
            f"{st['synthesis']['cpu_s']:.1f} s | {st['synthesis']['images_per_cpu_s']:.2f} | "
            f"{st['synthesis']['wall_s']:.0f} s |", "",
            "Each part alone, CPU seconds per image: " + "; ".join(f"{k} {v:.4f}" for k, v in per_img.items())
            + ".", "",
            f"- Machine: fp32 matmul (1024 x 1024) {r['matmul_gflops']:.1f} GFLOP/s on 1 thread.",
            f"- TAEF2 encoder at {s['size']} px: {p['encode_flops'] / 1e9:.2f} GFLOP per image (torch.utils."
            f"flop_counter), so at the matmul rate at most {r['encoder_flop_bound_images_per_s']:.1f} images/s; it "
            f"runs at {r['encoder_images_per_s']:.1f} images/s, **{r['encoder_share_of_bound']:.0%} of that bound**. "
            f"Decoder {p['decode_flops'] / 1e9:.2f} GFLOP, one guided UNet step {p['unet_step_flops'] / 1e9:.2f} GFLOP "
            "per image.",
            f"- Where the time goes: the prototype stage runs at "
            f"{st['prototypes']['images_per_cpu_s'] * p['encode_s']:.2f}x the encoder's speed alone, so the encoder is "
            f"{p['encode_s'] * s['images'] / st['prototypes']['cpu_s']:.0%} "
            f"of it (reading a JPEG: {p['load_s'] * 1000:.1f} ms); synthesis is "
            f"{s['denoising_steps'] * p['unet_step_s'] * s['synthesised'] / st['synthesis']['cpu_s']:.0%} UNet steps.",
            f"- Expected time printed by `distill` before it started (timed in wall time, under the same load): "
            f"*{r['expected']}*; the call took {st['distill_wall_s'] / 60:.1f} min.",
            f"- **Projection, all 50,000 images on 2 cores** ({pr['scaling']}): prototypes "
            f"{pr['prototypes_s'] / 60:.0f} min + synthesis {pr['synthesis_s'] / 60:.1f} min = "
            f"**{pr['total_s'] / 60:.0f} min** (target: 15 min). The encoder's FLOPs alone at the 2-core matmul rate "
            f"take {pr['encoder_flop_floor_s'] / 60:.0f} min. How 2 threads scale could not be measured on this loaded "
            "machine (the 2-thread wall time waits for cores), so 2 cores are taken as twice one: the optimistic end."]
    return rows


SECTIONS = (("1. Synthesis throughput (`bench/synthesis.py`)", "synthesis", synthesis),
            ("2. Per-class k-means (`bench/kmeans.py`)", "kmeans", kmeans),
            ("3. Storage (`bench/storage.py`)", "storage", storage),
            ("4. Prototype-stage memory (`bench/memory.py`)", "memory", memory),
            ("4b. A trained generator's synthesis against its FLOPs (`bench/synthesis_flops.py`)", "synthesis_flops",
             synthesis_flops))


DRILL_TITLE = "7. Many-class drill (`bench/drill.py`, issue 22)"


def drill(r: dict) -> list[str]:
    """The drill's table: per class count, wall time and peak RSS per command, throughput, kills survived."""
    s = r["settings"]
    out = [f"Command: `{r['command']}`. Synthetic folder dataset ({s['per_class']} PNGs of {s['image_size']} px per "
           f"class), {s['nproc']} processes (torchrun) for distill, relabel and evaluate; TAEF2 decode path at "
           f"--size {s['size']}, IPC {s['ipc']}, {s['epochs']} epoch(s); each of distill and relabel killed with "
           f"SIGKILL up to {s['kills']} times at random moments, then rerun to the end.", "",
           "| classes | images | distill s | prototypes img/s | synthesis img/s | peak RSS distill MB | relabel s | "
           "evaluate s | export s | report s | kills (distill, relabel) | identical after kills |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        w, k = row["wall_s"], row["kills"]
        out.append(f"| {row['classes']} | {row['images']} | {w['distill']:.1f} | {row['prototypes_images_per_s']} | "
                   f"{row['synthesis_images_per_s']} | {row['stage_peak_rss_mb'].get('prototypes')} | "
                   f"{w['relabel']:.1f} | {w['evaluate']:.1f} | {w['export']:.1f} | {w['report']:.1f} | "
                   f"{k['distill']}, {k['relabel']} | {all(row['identical_after_kills'].values())} |")
    if r.get("per_class_overhead_s") is not None:
        out += ["", f"Distill wall time against classes, least-squares slope: {r['per_class_overhead_s']:.3f} s per "
                "class (start-up of the two processes included in the intercept)."]
    rows = r["rows"]
    if len(rows) >= 3:  # linear in the classes? the seconds per added class between sizes, and memory against classes
        per = [(a["wall_s"]["distill"] - b["wall_s"]["distill"]) / (a["classes"] - b["classes"])
               for b, a in zip(rows, rows[1:])]
        steps = "; ".join(f"{b['classes']:,} -> {a['classes']:,}: {x:.3f} s" for b, a, x in zip(rows, rows[1:], per))
        growth = ("not rising: time grows at most linearly in the classes" if max(per[1:]) <= 1.2 * per[0]
                  else "**rising: time grows faster than linearly**")
        rss = [row["stage_peak_rss_mb"]["prototypes"] for row in rows]
        sizes = " / ".join(f"{row['classes']:,}" for row in rows)
        flat = "flat" if max(rss) <= 1.1 * min(rss) else "**growing**"
        out += ["", f"Distill seconds per added class, between successive sizes: {steps} ({growth}). Peak RSS of the "
                f"prototype stage: {' / '.join(f'{v:.0f}' for v in rss)} MB at {sizes} classes ({flat})."]
    largest = max(row["classes"] for row in r["rows"])
    if largest < 1000:
        out += ["", f"Measured up to {largest} classes only: the 1,000-class drill (`--classes 100,300,1000 "
                "--per-class 20`) did not fit the time on the shared 2-core machine; two points give a slope, "
                "not a check that time is linear. Peak RSS is each stage's own (log.jsonl), per process."]
    return out


def render(quick: bool = False, notes: str = "") -> str:
    results = {name: _load(name, quick) for _, name, _ in SECTIONS}
    any_r = next((r for r in results.values() if r), None)
    m = any_r["machine"] if any_r else {}
    out = ["# d4m benchmarks", "",
           f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores (shared with other jobs while measuring), "
           f"Python {m.get('python', '?')}, torch {m.get('torch', '?')}. No GPU.", "",
           "Run everything: `python bench/run_all.py [--quick]` (rewrites this file from `bench/results/*.json`); "
           "one benchmark: `python bench/<name>.py [--quick]`. Each benchmark runs d4m and its baseline in the same "
           "process, interleaved, and reports the median of the per-rep ratios. The cores were shared with other "
           "jobs (load average well above the core count), so wall times are noisy; the CPU-time columns "
           "(single-threaded, time.process_time) are the steadier measure of work.", ""]
    for title, name, fn in SECTIONS:
        out += [f"## {title}", ""]
        out += fn(results[name]) if results[name] else ["(not run)"]
        out.append("")
    from gpu_report import TITLE, render_runs

    runs = [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("gpu*.json"), key=_run_order)]
    out += [f"## {TITLE}", "", *render_runs(runs), ""]
    job = _load("main_job", quick)
    out += ["## 6. The embedded main job on this CPU (`bench/main_job.py`)", "",
            *(main_job(job) if job else ["(not run)"]), ""]
    drilled = _load("drill", False)
    if drilled:
        out += [f"## {DRILL_TITLE}", "", *drill(drilled), ""]
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


def write_report(quick: bool = False) -> Path:
    notes_path = HERE / "NOTES.md"
    notes = notes_path.read_text() if notes_path.is_file() else ""
    path = ROOT / "BENCHMARKS.md"
    path.write_text(render(quick, notes))
    return path


if __name__ == "__main__":
    import sys

    print(write_report(quick="--quick" in sys.argv))
