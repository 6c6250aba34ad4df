"""``d4m evaluate``: train N students on distilled images with a teacher's soft labels, test on real val data.

Results: <eval-root>/<student>/<recipe>/seed<k>/{metrics.json,checkpoint.pt,student.safetensors} and
<eval-root>/<student>/<recipe>/summary.{json,md}: mean +- std over seeds of the last-epoch top-1 (the headline)
and of the best-epoch top-1 (reported beside it, labelled as such).
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from d4m.checks import at_most, whole
from d4m.data import open_dataset
from d4m.errors import ConfigError
from d4m.evaluate.val import ValSet, default_image_size
from d4m.labels import LabelStore, OnlineLabels, StoredLabels, StreamImages, num_batches, relabel
from d4m.models import Normalized, class_columns, create_model, load_teacher, save_checkpoint
from d4m.parallel import Topology
from d4m.runio import atomic_write_text
from d4m.seeding import derive_seed
from d4m.train import Recipe, train_student
from d4m.train.bounds import (MAX_BATCH, MAX_SEEDS, image_size, images_in_memory, label_store, model_fits,
                              training_batch, val_batch)


@dataclass
class EvalJob:
    images: Path  # an ImageFolder of distilled images
    val: str  # KIND:PATH of the real data (its val split is used)
    teacher: str
    student: str
    recipe: Recipe
    eval_root: Path
    labels_root: Path
    seeds: int = 1
    labels: str = "stored"  # stored, online, or hard (cross-entropy on the class labels alone, no teacher)
    label_format: str = "fp16"
    topk: int = 0
    size: int | None = None
    device: str = "cpu"
    workers: int = 0
    physical_batch: int = 0
    eval_every: int = 0  # val top-1 every N epochs and after the last (0: after the last only)
    val_limit: int | None = None  # a seeded subset of this many val images (None: all)
    strict: bool = False  # a class folder without images (distilled or real) is an error, not a warning
    log_path: Path | None = None
    command: str = ""
    extra: dict = field(default_factory=dict)
    topo: Topology = field(default_factory=Topology)  # several processes: relabel epochs and seeds are shared out

    def __post_init__(self):
        whole("--seeds", self.seeds, 1)
        whole("--workers", self.workers, 0)
        whole("--topk", self.topk, 0)
        whole("--micro-batch", self.physical_batch, 0)
        whole("--eval-every", self.eval_every, 0)
        whole("--val-limit", self.val_limit, 1, optional=True)
        whole("--size", self.size, 8, optional=True)
        at_most("--seeds", self.seeds, MAX_SEEDS)
        if self.physical_batch:
            at_most("--micro-batch", self.physical_batch, MAX_BATCH)
        if self.size is not None:
            image_size("--size", self.size)


def label_set_name(teacher_arch: str, recipe: Recipe, fmt: str, k: int) -> str:
    tag = f"top{k}" if fmt == "topk" else fmt
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{teacher_arch}-{recipe.name}-{tag}")


def open_images(path: Path, strict: bool = False):
    if not Path(path).is_dir():
        raise ConfigError(f"--images {path}: not a directory of class folders")
    return open_dataset(f"folder:{path}", "train", strict=strict)


def check_sizes(job: "EvalJob", images, size: int) -> None:
    """The image size, the student, a training batch and the decoded images, bounded before anything is built."""
    from d4m.data.datasets import first_readable_size

    images_in_memory(f"--run/--images {job.images}", len(images), first_readable_size(images))
    image_size("--size" if job.size else f"--size (from --val {job.val})", size)
    model_fits(f"--student {job.student}", job.student, len(images.classes), size, "the student", job.device)
    stream = min(job.recipe.batch_size, len(images))
    flag = (f"--micro-batch {job.physical_batch}" if job.physical_batch else
            f"--micro-batch 0 (the recipe's batch of {stream})")
    training_batch(flag, stream, job.physical_batch or stream, size, job.device)
    val_batch(f"--size {size}", size, job.device)


def check_label_store(store: LabelStore, images, teacher, epochs: int, fmt: str, k: int) -> None:
    """The epochs of soft labels still to store: one in memory, all on disk."""
    todo = sum(1 for e in range(epochs) if not store.has_epoch(e))
    if todo:
        label_store(store.root, len(images), todo, teacher.num_outputs, fmt, k)


def prepare_labels(job: EvalJob, images, teacher, data: StreamImages):
    """The label source: stored labels (relabelling missing epochs first) or the online teacher."""
    if job.labels == "online":
        return OnlineLabels(teacher, job.device), None
    fmt = "topk" if job.topk else job.label_format
    store = LabelStore(job.labels_root / label_set_name(teacher.arch, job.recipe, fmt, job.topk))
    check_label_store(store, images, teacher, job.recipe.epochs, fmt, job.topk)
    meta = relabel(data, teacher, store, job.recipe.epochs, fmt, job.topk, job.device, job.workers, job.log_path,
                   extra_meta={"images": str(job.images), "recipe": job.recipe.name}, topo=job.topo)
    return StoredLabels(store, teacher.num_outputs, num_batches(len(images), data.spec)), meta


def hard_job(job: EvalJob) -> EvalJob:
    """The same job with hard labels: recipe '<name>-hard', cross-entropy weight 1, no soft labels."""
    recipe = dataclasses.replace(job.recipe, name=f"{job.recipe.name}-hard", hard_label_weight=1.0)
    return dataclasses.replace(job, labels="hard", recipe=recipe)


def run_evaluation(job: EvalJob) -> dict:
    if job.labels not in ("stored", "online", "hard"):
        raise ConfigError(f"--labels {job.labels!r}: expected stored, online or hard")
    if job.labels == "hard" and not job.recipe.name.endswith("-hard"):
        job = hard_job(job)
    images = open_images(job.images, job.strict)
    size = default_image_size(job.val, job.size, job.strict)
    check_sizes(job, images, size)
    teacher = load_teacher(job.teacher, classes=images.classes, data="the distilled images")
    val = ValSet(job.val, size, limit=job.val_limit, workers=job.workers, strict=job.strict)
    val_columns = class_columns(images.classes, val.classes, f"--val {job.val}", data="the val set",
                                model="the distilled images")
    if val_columns is not None:
        raise ConfigError(f"--val {job.val}: {len(val.classes)} classes, the distilled images have "
                          f"{len(images.classes)}; use `d4m subset` for a class subset")
    data = StreamImages(images, job.recipe.stream(len(images), size))
    source, label_meta = prepare_labels(job, images, teacher, data) if job.labels != "hard" else (None, None)
    out = job.eval_root / job.student / job.recipe.name
    for k in job.topo.mine(list(range(job.seeds))):
        seed_dir = out / f"seed{k}"
        torch.manual_seed(derive_seed(k, "student-init"))
        model = Normalized(create_model(job.student, len(images.classes), size))
        metrics = train_student(model, data, torch.tensor(images.targets), source, job.recipe, seed_dir, seed=k,
                                device=job.device, physical_batch=job.physical_batch, workers=job.workers,
                                evaluate=lambda m: val.top1(m, job.device), eval_every=job.eval_every,
                                log_path=job.log_path, desc=f"{job.student} seed{k}")
        save_checkpoint(seed_dir / "student.safetensors", model.net, job.student, images.classes, size,
                        val_top1=metrics["last_top1"], recipe=job.recipe.name, teacher=job.teacher)
    job.topo.barrier()  # every seed's metrics.json is on disk: gather them
    results = [json.loads((out / f"seed{k}" / "metrics.json").read_text()) for k in range(job.seeds)]
    summary = summarise(job, results, size, label_meta)
    if job.topo.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(out / "summary.md", summary_markdown(summary))
    job.topo.barrier()
    return summary


def _mean_std(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0, "n": len(values)}


def summarise(job: EvalJob, results: list[dict], size: int, label_meta: dict | None) -> dict:
    return {
        "student": job.student, "recipe": job.recipe.name, "teacher": job.teacher, "images": str(job.images),
        "val": job.val, "val_limit": job.val_limit, "image_size": size, "labels": job.labels, "seeds": job.seeds,
        "last_epoch_top1": _mean_std([r["last_top1"] for r in results]),
        "best_epoch_top1": _mean_std([r["best_top1"] for r in results]),
        "per_seed": [{"seed": k, "last_top1": r["last_top1"], "best_top1": r["best_top1"],
                      "best_epoch": r["best_epoch"]} for k, r in enumerate(results)],
        "label_store": {key: label_meta.get(key) for key in ("format", "k", "bytes", "bytes_per_image_epoch")}
        if label_meta else None,
        "command": job.command, "resolved_recipe": job.recipe.to_dict(),
        "config": {"device": job.device, "workers": job.workers, "physical_batch": job.physical_batch,
                   "eval_every": job.eval_every, "label_format": job.label_format, "topk": job.topk, **job.extra},
    }


def summary_table(s: dict) -> str:
    def fmt(ms):
        return "-" if ms["mean"] is None else f"{ms['mean']:.2f} ± {ms['std']:.2f}"
    rows = ["| student | recipe | labels | seeds | top-1 last epoch (headline) | top-1 best epoch |",
            "|---|---|---|---|---|---|",
            f"| {s['student']} | {s['recipe']} | {s['labels']} | {s['seeds']} | {fmt(s['last_epoch_top1'])} "
            f"| {fmt(s['best_epoch_top1'])} |"]
    return "\n".join(rows)


def summary_markdown(s: dict) -> str:
    return (f"# d4m evaluate: {s['student']} / {s['recipe']}\n\n{summary_table(s)}\n\n"
            f"Top-1 in % on the real validation images of {s['val']}, mean ± std over {s['seeds']} seed(s). "
            "The headline is the last epoch; the best epoch is shown beside it and is optimistic (selected on the val set).\n\n"
            f"Command:\n\n```\n{s['command']}\n```\n\nResolved config:\n\n```json\n"
            f"{json.dumps({'recipe': s['resolved_recipe'], **s['config']}, indent=2)}\n```\n")
