"""Where a student's epoch goes (issue 21): ConvNet-W128 on 100 CIFAR-10 images, the `locked` recipe's stream.

    python bench/student_loop.py [--shared ../shared] [--reps 5] [--val 10000] [--threads 1] [--smoke]

Times (medians of --reps repetitions): the stream's crop replay for one epoch, reading one epoch's stored labels,
the optimiser steps of one epoch (forward, backward, AdamW), the per-epoch checkpoint, and one pass over ``--val``
test images. Also the student's FLOPs per image (torch.utils.flop_counter) and this CPU's measured conv GFLOP/s,
which give the compute floor of an epoch, and the cost of a 1,000-epoch student with the val pass every epoch
(d4m's default before issue 21) against only after the last epoch (the default now). Writes
bench/results/student_loop.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import ratio_line, save_result

ROOT = Path(__file__).resolve().parents[1]


def subset(src: Path, dst: Path, per_class: int) -> Path:
    for cls in sorted(p.name for p in src.iterdir()):
        (dst / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:per_class]:
            (dst / cls / f.name).symlink_to(f)
    return dst


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--val", type=int, default=10000, help="test images in the val pass")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="2 images per class, 1 rep, 50 val images")
    a = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(a.threads)
    try:
        return measure(a)
    finally:
        torch.set_num_threads(threads)


def measure(a) -> int:
    from d4m.data import open_dataset
    from d4m.evaluate.val import ValSet
    from d4m.labels import LabelStore, StoredLabels, StreamImages, iterate_epoch, num_batches, relabel
    from d4m.labels.loss import kl_soft_loss
    from d4m.models import Normalized, create_model, load_teacher
    from d4m.train import load_recipe
    from d4m.train.checkpoint import save_training_state
    from d4m.train.loop import make_optimizer

    shared = Path(a.shared)
    per_class, reps, n_val = (2, 1, 50) if a.smoke else (10, a.reps, a.val)
    tmp = Path(tempfile.mkdtemp(prefix="d4m-bench-loop-"))
    images = open_dataset(f"folder:{subset(shared / 'data/cifar10/train', tmp / 'images', per_class)}", "train")
    recipe = load_recipe("locked", epochs=reps + 1)
    data = StreamImages(images, recipe.stream(len(images), 32))
    teacher = load_teacher(f"cifar-resnet20:{shared / 'weights/cifar10-resnet/resnet20-12fca82f.th'}",
                           classes=images.classes)
    store = LabelStore(tmp / "labels")
    relabel(data, teacher, store, recipe.epochs, "fp16", 0, "cpu", 0, None, extra_meta={}, topo=None)
    labels = StoredLabels(store, teacher.num_outputs, num_batches(len(images), data.spec))
    model = Normalized(create_model("convnet-w128", 10, 32))
    optimizer = make_optimizer(model, recipe)
    epoch_box = [0]

    def stream():
        for _ in iterate_epoch(data, epoch_box[0]):
            pass

    def read_labels():
        store.read_epoch(epoch_box[0], teacher.num_outputs)

    batches = list(iterate_epoch(data, 0))
    soft = [labels(0, b) for b in batches]

    def steps():
        model.train()
        for b, t in zip(batches, soft):
            optimizer.zero_grad(set_to_none=True)
            kl_soft_loss(model(b.images), t, recipe.temperature).backward()
            optimizer.step()

    def checkpoint():
        save_training_state(tmp / "checkpoint.pt", model, optimizer, 1, [{"epoch": 1}] * 500, {})

    val = ValSet(f"folder:{shared / 'data/cifar10/test'}", 32, limit=n_val)

    def val_pass():
        val.top1(model, "cpu")

    parts = {"stream": stream, "labels": read_labels, "steps": steps, "checkpoint": checkpoint}
    times = {k: median_time(f, reps) for k, f in parts.items()}
    times["val_pass"] = median_time(val_pass, 1)
    x = batches[0].images[:1]
    with FlopCounterMode(display=False) as fc:
        kl_soft_loss(model(x), soft[0][:1], recipe.temperature).backward()
    train_flops = fc.get_total_flops() * len(images)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    z = torch.randn(50, 128, 16, 16)
    conv_s = median_time(lambda: conv(z), max(3, reps))
    conv_gflops = 2 * 50 * 128 * 128 * 9 * 16 * 16 / conv_s / 1e9
    epoch = sum(times[k] for k in parts)
    result = {
        "images": len(images), "threads": a.threads, "val_images": len(val),
        "seconds": {k: round(v, 4) for k, v in times.items()}, "epoch_s": round(epoch, 4),
        "train_gflop_per_epoch": round(train_flops / 1e9, 2), "conv_gflops_measured": round(conv_gflops, 1),
        "compute_floor_epoch_s": round(train_flops / 1e9 / conv_gflops, 4),
        "student_1000_epochs_min": {"val_every_epoch": round(1000 * (epoch + times["val_pass"]) / 60, 1),
                                    "val_last_only": round((1000 * epoch + times["val_pass"]) / 60, 1)},
    }
    result["ratio_val_every_epoch_over_last_only"] = round(
        result["student_1000_epochs_min"]["val_every_epoch"] / result["student_1000_epochs_min"]["val_last_only"], 1)
    for k, v in times.items():
        print(f"{k:>12}: {v * 1000:9.1f} ms" + (f"  ({v / epoch:5.1%} of an epoch)" if k in parts else ""))
    print(f"epoch {epoch:.3f} s; compute floor {result['compute_floor_epoch_s']:.3f} s "
          f"({result['train_gflop_per_epoch']} GFLOP at {result['conv_gflops_measured']} GFLOP/s measured)")
    print(f"1,000-epoch student: {result['student_1000_epochs_min']['val_every_epoch']} min with the val pass every "
          f"epoch, {result['student_1000_epochs_min']['val_last_only']} min with it after the last "
          f"(x{result['ratio_val_every_epoch_over_last_only']})")
    print(ratio_line("1000-epoch student, val every epoch / val after the last",
                     result["ratio_val_every_epoch_over_last_only"], "> 1", None))
    print(ratio_line("epoch / compute floor", epoch / result["compute_floor_epoch_s"], "close to 1", None))
    if not a.smoke:
        save_result("student_loop", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
