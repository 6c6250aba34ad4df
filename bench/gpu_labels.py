"""GPU run phase "labels": soft labels and a student at ImageNet shape, through d4m's own data path.

A random-weight ResNet-18 teacher (1,000 classes, 224 px, saved and loaded as a d4m checkpoint) relabels a folder
of 10,000 distilled-like images (one ImageNet-1K IPC 10 epoch; 224 px PNGs, as ``d4m distill`` writes for
ImageNet) with the TTM stream of the ``paper``
recipe (RandomResizedCrop + flip per image, CutMix per batch of 1,024) through ``d4m.labels.relabel``; a
ResNet-18 student trains on the stored labels through ``d4m.train.train_student``. Each is timed end to end and in
parts: the stream's CPU side alone (PNG decode, crop replay, CutMix: ``iterate_epoch`` with no model) and the
GPU side alone (the same models on a batch already on the device, in d4m's fp32 and, for comparison, in bf16
with channels_last). The ImageNet-1K projection: IPC 10 is 10,000 images x 300 epochs = 3 M image-epochs for the
labels and as many for one student; IPC 50, 15 M.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from gpu_sd import sync

EPOCHS_300 = 300


def settings(smoke: bool) -> dict:
    if smoke:
        return dict(images=16, classes=4, px=40, size=32, batch=8, epochs=1, workers=0, reps=1)
    # one ImageNet-1K IPC 10 epoch exactly: 10,000 images, 10 batches of 1,024 (the last one smaller)
    return dict(images=10_000, classes=1000, px=224, size=224, batch=1024, epochs=2, workers=16, reps=5)


def _write_png(job) -> None:
    from PIL import Image

    path, seed, px = job
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 14, 14, generator=g)
    x = torch.nn.functional.interpolate(small, size=(px, px), mode="bicubic", align_corners=False).clamp(0, 1)
    Image.fromarray((x[0].permute(1, 2, 0) * 255).byte().numpy()).save(path)


def write_images(root: Path, n: int, classes: int, px: int, workers: int) -> list[str]:
    """``n`` smooth random PNGs of ``px`` pixels spread over ``classes`` class folders (an ImageFolder)."""
    names = [f"c{c:04d}" for c in range(classes)]
    jobs = []
    for i in range(n):
        folder = root / names[i % classes]
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:06d}.png", i, px))
    if workers:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_png, jobs, chunksize=64))
    else:
        for j in jobs:
            _write_png(j)
    return names


def gpu_rate(step, x: torch.Tensor, reps: int, dev: str) -> float:
    """Images/s of ``step(x)`` on a batch already on the device (one warm-up call)."""
    step(x)
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        step(x)
    sync(dev)
    return reps * len(x) / (time.perf_counter() - t)


def phase_labels(ctx, rec: dict) -> None:
    from d4m.data import open_dataset
    from d4m.labels import LabelStore, StoredLabels, StreamImages, iterate_epoch, kl_soft_loss, num_batches, relabel
    from d4m.models import Normalized, create_model, load_teacher, save_checkpoint
    from d4m.train import load_recipe, train_student
    from d4m.train.loop import make_optimizer

    s, dev = settings(ctx.smoke), ctx.device
    root = ctx.work / "labels-images"
    t = time.perf_counter()
    classes = write_images(root, s["images"], s["classes"], s["px"], s["workers"])
    rec["settings"] = {k: s[k] for k in ("images", "classes", "px", "size", "batch", "epochs", "workers")}
    rec["settings"].update(teacher="resnet18 (random, d4m checkpoint)", student="resnet18", recipe="paper", device=dev,
                           write_images_s=time.perf_counter() - t)
    torch.manual_seed(0)
    save_checkpoint(ctx.work / "teacher.safetensors", create_model("resnet18", len(classes), s["size"]), "resnet18",
                    classes, s["size"])
    images = open_dataset(f"folder:{root}", "train")
    teacher = load_teacher(f"checkpoint:{ctx.work / 'teacher.safetensors'}", classes=images.classes)
    recipe = load_recipe("paper", epochs=s["epochs"])
    recipe = dataclasses.replace(recipe, batch_size=s["batch"])
    data = StreamImages(images, recipe.stream(len(images), s["size"]))
    n, ep = len(images), s["epochs"]
    # 1. the stream's CPU side alone: decode, crop replay, CutMix (fresh workers each epoch, as d4m runs them)
    t = time.perf_counter()
    for e in range(ep):
        for _ in iterate_epoch(data, e, s["workers"]):
            pass
    rec["stream_cpu_images_per_s"] = n * ep / (time.perf_counter() - t)
    ctx.record("labels", rec)
    # 2. the GPU side alone, on a batch already on the device
    x = torch.rand(s["batch"], 3, s["size"], s["size"], device=dev)
    teacher.to(dev)
    rec["teacher_gpu_images_per_s"] = gpu_rate(teacher, x, s["reps"], dev)
    student = Normalized(create_model("resnet18", len(classes), s["size"])).to(dev)
    opt = make_optimizer(student, recipe)
    soft = torch.randn(s["batch"], len(classes), device=dev)

    def train_step(xb, autocast=False):
        with torch.autocast("cuda" if dev == "cuda" else "cpu", torch.bfloat16, enabled=autocast):
            loss = kl_soft_loss(student(xb), soft, recipe.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rec["student_gpu_images_per_s"] = gpu_rate(train_step, x, s["reps"], dev)
    ctx.record("labels", rec)
    # the same with bf16 autocast and channels_last (not what d4m does: how much the GPU side could gain)
    xc = x.contiguous(memory_format=torch.channels_last)
    teacher.model.to(memory_format=torch.channels_last)
    student.to(memory_format=torch.channels_last)
    with torch.autocast("cuda" if dev == "cuda" else "cpu", torch.bfloat16):
        rec["teacher_gpu_bf16_cl_images_per_s"] = gpu_rate(teacher, xc, s["reps"], dev)
    rec["student_gpu_bf16_cl_images_per_s"] = gpu_rate(lambda b: train_step(b, True), xc, s["reps"], dev)
    teacher.model.to(memory_format=torch.contiguous_format)
    del student, opt, x, xc, soft
    ctx.record("labels", rec)
    # 3. d4m end to end: relabel (stored fp16 labels), then a student on them
    store = LabelStore(ctx.work / "labels-store")
    t = time.perf_counter()
    relabel(data, teacher, store, ep, "fp16", 0, dev, s["workers"])
    rec["relabel_images_per_s"] = n * ep / (time.perf_counter() - t)
    ctx.record("labels", rec)
    torch.manual_seed(0)
    student = Normalized(create_model("resnet18", len(classes), s["size"]))
    source = StoredLabels(store, teacher.num_outputs, num_batches(n, data.spec))
    t = time.perf_counter()
    train_student(student, data, torch.tensor(images.targets), source, recipe, seed=0, device=dev,
                  workers=s["workers"])
    rec["train_images_per_s"] = n * ep / (time.perf_counter() - t)
    rec["projection"] = project_labels(rec)
    rec["summary"] = summary_lines(rec)


def project_labels(rec: dict) -> dict:
    """Hours for ImageNet-1K IPC 10 and 50 (300 epochs): labels and one student at the measured end-to-end rates,
    and which side bounds each (the CPU stream or the GPU)."""
    out = {}
    for what, e2e, gpu in (("labels", "relabel_images_per_s", "teacher_gpu_images_per_s"),
                           ("student", "train_images_per_s", "student_gpu_images_per_s")):
        rate, cpu, dev = rec.get(e2e), rec.get("stream_cpu_images_per_s"), rec.get(gpu)
        if not rate:
            continue
        out[f"{what}_bound"] = "cpu-stream" if cpu and dev and cpu < dev else "gpu"
        for ipc in (10, 50):
            out[f"{what}_ipc{ipc}_h"] = 1000 * ipc * EPOCHS_300 / rate / 3600
    return out


def summary_lines(rec: dict) -> list[str]:
    p = rec.get("projection", {})
    dev = rec.get("settings", {}).get("device", "cuda")
    lines = [f"stream CPU side {rec.get('stream_cpu_images_per_s', 0):.0f} img/s; teacher on {dev} "
             f"{rec.get('teacher_gpu_images_per_s', 0):.0f} img/s fp32 ({rec.get('teacher_gpu_bf16_cl_images_per_s', 0):.0f}"
             f" bf16+cl); student step on {dev} {rec.get('student_gpu_images_per_s', 0):.0f} img/s fp32 "
             f"({rec.get('student_gpu_bf16_cl_images_per_s', 0):.0f} bf16+cl)",
             f"d4m end to end: relabel {rec.get('relabel_images_per_s', 0):.0f} img/s, student "
             f"{rec.get('train_images_per_s', 0):.0f} img/s"]
    if "labels_ipc10_h" in p:
        lines.append(f"ImageNet-1K, 300 epochs: labels IPC 10 {p['labels_ipc10_h']:.2f} h, IPC 50 "
                     f"{p['labels_ipc50_h']:.2f} h ({p['labels_bound']}-bound); one student IPC 10 "
                     f"{p.get('student_ipc10_h', float('nan')):.2f} h, IPC 50 {p.get('student_ipc50_h', float('nan')):.2f} h "
                     f"({p.get('student_bound')}-bound)")
    return lines
