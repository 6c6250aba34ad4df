"""The classifier check of a d4m-trained generator: does a CIFAR classifier recognise its classes?

    python experiments/generator_check.py TEACHER MODEL [MODEL ...] [--per-class 100] [--steps 25]
        [--guidance 3 [G ...]] [--scheduler ddim [dpm ...]] [--grid-dir DIR] [--json FILE]

For every model x sampler x guidance: ``--per-class`` images per class from pure noise (fixed seeds: image j of
class c always starts from the same noise), decoded by the model's codec, classified by TEACHER (e.g.
cifar-resnet20:PATH, which resizes them to its input size). Prints one markdown row per setting with the top-1 and
the per-class top-1 (the data's class order); ``--grid-dir`` saves a grid of the first 10 images of each class.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def check(gen, codec, teacher, per_class: int, steps: int, guidance: float, seed: int, batch_size: int,
          grid: Path | None = None) -> dict:
    from torchvision.utils import save_image

    from d4m.generator.sample import sample_images

    classes = gen.info["classes"]
    hits, shown = torch.zeros(len(classes)), []
    images, labels = [], []

    def flush():
        if images:
            pred = teacher(torch.stack(images).clamp(0, 1)).argmax(1)
            for c, p in zip(labels, pred.tolist()):
                hits[c] += int(c == p)
            images.clear(), labels.clear()

    for c, j, img in sample_images(gen, codec, per_class, steps=steps, guidance=guidance, seed=seed,
                                   batch_size=batch_size, progress=False):
        images.append(img.float().cpu()), labels.append(c)
        if grid is not None and j < 10:
            shown.append(img.float().cpu())
        if len(images) >= batch_size:
            flush()
    flush()
    if grid is not None:
        grid.parent.mkdir(parents=True, exist_ok=True)
        save_image(torch.stack(shown), grid, nrow=min(per_class, 10), padding=1)
    per = (hits / per_class * 100).tolist()
    return {"top1": sum(per) / len(per), "per_class": dict(zip(classes, per))}


def main() -> int:
    from d4m.codec import build_codec
    from d4m.models import class_columns, load_teacher
    from d4m.synthesis.generator import load_generator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, nargs="+", default=[3.0])
    ap.add_argument("--scheduler", nargs="+", default=[None], help="ddim | dpm | ... (default: the model's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--grid-dir", help="save a sample grid per setting here")
    ap.add_argument("--json", help="append one JSON line per setting to this file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    teacher = None
    for model in a.models:
        for sched in a.scheduler:
            gen = load_generator(model, scheduler=sched)
            codec = build_codec(gen.info["codec"], model)
            if teacher is None:
                teacher = load_teacher(a.teacher)
                print("| model | step | sampler | steps | guidance | top-1 | " + " | ".join(gen.info["classes"])
                      + " | s |\n|" + "---|" * (7 + len(gen.info["classes"])), flush=True)
            teacher.columns = class_columns(teacher.classes, gen.info["classes"], a.teacher)
            for g in a.guidance:
                t0 = time.perf_counter()
                name = f"{Path(model).parent.name}-{Path(model).name}-{sched or 'own'}-s{a.steps}-g{g:g}"
                grid = Path(a.grid_dir) / f"{name}.png" if a.grid_dir else None
                r = check(gen, codec, teacher, a.per_class, a.steps, g, a.seed, a.batch_size, grid)
                dt = time.perf_counter() - t0
                kind = sched or type(gen.scheduler).__name__
                print(f"| {model} | {gen.info.get('step')} | {kind} | {a.steps} | {g:g} | {r['top1']:.1f} | "
                      + " | ".join(f"{v:.0f}" for v in r["per_class"].values()) + f" | {dt:.0f} |", flush=True)
                if a.json:
                    with open(a.json, "a") as fh:
                        fh.write(json.dumps({"model": model, "step": gen.info.get("step"), "sampler": kind,
                                             "steps": a.steps, "guidance": g, "per_class_n": a.per_class,
                                             "seed": a.seed, **r, "seconds": dt}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
