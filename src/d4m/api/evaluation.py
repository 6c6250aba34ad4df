"""TTM and evaluation as functions: ``relabel``, ``evaluate_run`` (and its card), teachers, ``subset``.

``evaluate_run(card=True)`` is where two stages meet: the card's random-real baseline is a ``select`` run (a method),
trained and tested like the distilled images; ``d4m.evaluate`` itself knows no method.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from d4m.api.run import Run, as_path
from d4m.checks import at_most, whole
from d4m.errors import ConfigError
from d4m.settings import documented


def _where(run, images, out, allow_incomplete: bool = False) -> tuple[Path, Path, Path, Path]:
    """(images dir, labels root, eval root, log path) of a run directory or of a bare folder of images.

    A run's images/ must match its manifest (``d4m.runio.verify``; ``allow_incomplete``: warn instead)."""
    from d4m.runio.verify import verify_run

    if (run is None) == (images is None):
        raise ConfigError("give exactly one of --run RUN or --images DIR")
    if run is not None:
        path = verify_run(as_path(run), allow_incomplete).path
        root = Path(out).expanduser() if out else path / "eval"
        return path / "images", path / "labels", root, path / "log.jsonl"
    images = Path(images).expanduser()
    root = Path(out).expanduser() if out else images.resolve().parent / "eval"
    return images, root / "labels", root, root / "log.jsonl"


def command_line(command: str, options: dict) -> str:
    """The ``d4m`` command line equivalent to a call (recorded in summaries so a result says how it was made)."""
    words = ["d4m", *command.split()]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


@documented("relabel")
def relabel(run: str | Path | Run | None = None, *, teacher: str, images: str | Path | None = None,
            recipe: str = "paper", epochs: int | None = None, size: int | None = None, val: str | None = None,
            topk: int = 0, label_format: str = "fp16", name: str | None = None, out: str | Path | None = None,
            device: str = "auto", workers: int = 0, allow_incomplete: bool = False, strict: bool = False) -> dict:
    """Store the teacher's soft labels for every epoch of the replayable augmentation stream (``d4m relabel``).

    Returns the label set's metadata (``path``, ``epochs_stored``, ``bytes``, ``bytes_per_image_epoch``, ...).

    Example::

        labels = d4m.relabel("runs/c10-ipc10", teacher="cifar-resnet20:weights/resnet20.th", epochs=300, topk=10)
        labels["path"], labels["bytes"]
    """
    from d4m.data.datasets import first_readable_size
    from d4m.evaluate.run import check_label_store, label_set_name, open_images
    from d4m.evaluate.val import default_image_size
    from d4m.labels import LabelStore, StreamImages, relabel as store_labels
    from d4m.models import load_teacher
    from d4m.parallel import resolve_device, topology
    from d4m.train import load_recipe
    from d4m.train.bounds import image_size, images_in_memory

    images_dir, labels_root, _, log = _where(run, images, out, allow_incomplete)
    rec = load_recipe(recipe, epochs)
    data = open_images(images_dir, strict)
    images_in_memory(f"--run/--images {images_dir}", len(data), first_readable_size(data))
    given = size
    size = default_image_size(val, size, strict) if (val or size) else None
    model = load_teacher(teacher, classes=data.classes, data="the distilled images")
    size = size or model.input_size
    image_size("--size" if given else f"--size (from {f'--val {val}' if val else 'the teacher'})", size)
    fmt = "topk" if topk else label_format
    store = LabelStore(labels_root / (name or label_set_name(model.arch, rec, fmt, topk)))
    check_label_store(store, data, model, rec.epochs, fmt, topk)
    meta = store_labels(StreamImages(data, rec.stream(len(data), size)), model, store, rec.epochs, fmt, topk,
                        resolve_device(device), workers, log,
                        extra_meta={"images": str(images_dir), "recipe": rec.name}, topo=topology(device))
    return {**meta, "path": str(store.root)}


@documented("evaluate")
def evaluate_run(run: str | Path | Run | None = None, *, teacher: str, val: str, images: str | Path | None = None,
             student: str = "convnet-w128", recipe: str = "paper", epochs: int | None = None, seeds: int = 1,
             labels: str = "stored", label_format: str = "fp16", topk: int = 0, size: int | None = None,
             val_limit: int | None = None, micro_batch: int = 0, eval_every: int = 0,
             out: str | Path | None = None, device: str = "auto", workers: int = 0, card: bool = False,
             train_data: str | None = None, full_data_acc: float | str | None = None, command: str | None = None,
             allow_incomplete: bool = False, batch_size: int | None = None, strict: bool = False) -> dict:
    """Train ``seeds`` students on the distilled images with the teacher's labels; test on real data (``d4m evaluate``).

    Returns the summary (``last_epoch_top1`` mean/std over seeds, the headline; ``best_epoch_top1`` beside it;
    ``per_seed``, the resolved recipe, ...); with ``card=True`` the fair-evaluation card instead (``soft``,
    ``random``, ``hard``, ``full``, ``IOR``, ``HLR``, ``path``; ``full_data_acc``: a top-1 %, ``"auto"`` to measure
    the teacher on ``val``, or None for the teacher's record). Finished students are reused on a rerun; the random
    baseline is trained once per image set, student, recipe, teacher, seeds and val set (a shared cache).

    Example::

        summary = d4m.evaluate_run(run, teacher="cifar-resnet20:FILE", val="cifar10:~/data", seeds=3)
        summary["last_epoch_top1"]["mean"]
        card = d4m.evaluate_run(run, teacher="cifar-resnet20:FILE", val="cifar10:~/data", seeds=3, card=True)
        card["IOR"], card["HLR"]

    ``micro_batch`` only splits each of the recipe's batches to fit memory (gradient accumulation): the recipe's
    batch size (50 in ``paper``) is what the students train with whatever it is. ``batch_size`` is its older name,
    still accepted.
    """
    from d4m.evaluate.run import EvalJob, run_evaluation
    from d4m.parallel import resolve_device, topology
    from d4m.train import load_recipe

    if batch_size is not None:  # the older name of micro_batch
        if micro_batch not in (0, batch_size):
            raise ConfigError("give micro_batch or its older name batch_size, not both")
        micro_batch = batch_size
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: must be >= 1")
    if eval_every < 0:
        raise ConfigError(f"--eval-every {eval_every}: must be >= 0 (0: after the last epoch only)")
    images_dir, labels_root, eval_root, log = _where(run, images, out, allow_incomplete)
    if command is None:
        command = command_line("evaluate", {
            "run": as_path(run) if run is not None else None, "images": images, "teacher": teacher, "val": val,
            "student": student, "recipe": recipe, "epochs": epochs, "seeds": seeds, "labels": labels,
            "label_format": label_format, "topk": topk, "size": size, "val_limit": val_limit,
            "micro_batch": micro_batch, "eval_every": eval_every, "out": out, "device": device, "workers": workers,
            "card": card, "train_data": train_data, "full_data_acc": full_data_acc, "strict": strict})
    job = EvalJob(images=images_dir, val=val, teacher=teacher, student=student, recipe=load_recipe(recipe, epochs),
                  eval_root=eval_root, labels_root=labels_root, seeds=seeds, labels=labels,
                  label_format=label_format, topk=topk, size=size, device=resolve_device(device), workers=workers,
                  physical_batch=micro_batch, eval_every=eval_every, val_limit=val_limit, log_path=log,
                  command=command, topo=topology(device), strict=strict)
    if val_limit is not None and val_limit < 1:
        raise ConfigError(f"--val-limit {val_limit}: must be >= 1")
    if card:
        return _card(job, as_path(run) if run is not None else None, train_data, full_data_acc)
    summary = run_evaluation(job)
    return {**summary, "path": str(eval_root / student / job.recipe.name)}


def _card(job, run: Path | None, train_data: str | None, full_data_acc: float | str | None) -> dict:
    """The main, random-baseline and hard-label students (finished ones are reused), then the card."""
    from d4m.config import DistillConfig
    from d4m.evaluate.card import baseline_plan, baseline_summary, card_train_data, full_data_accuracy, write_card
    from d4m.evaluate.run import hard_job, run_evaluation
    from d4m.methods.runs import select_run

    train_data = card_train_data(run, train_data)
    full = full_data_accuracy(job.teacher, full_data_acc, job)
    soft = run_evaluation(job)
    base, ipc, out_size = baseline_plan(job, train_data)
    if not (base / "manifest.jsonl").is_file():  # the random real subset: a method's run, made once per key
        select_run(DistillConfig(data=train_data, ipc=ipc, out_size=out_size, seed=0, out=str(base),
                                 strict=job.strict), "random")
    random = baseline_summary(job, base)
    hard = run_evaluation(hard_job(job))
    return write_card(job, train_data, soft, random, hard, full, base)


@documented("teacher train")
def train_teacher(data: str, out: str | Path, *, arch: str = "convnet-w128", epochs: int = 30, batch_size: int = 128,
                  lr: float | None = None, optimizer: str = "auto", weight_decay: float | None = None,
                  warmup: float | None = None, label_smoothing: float = 0.1, size: int | None = None,
                  limit: int | None = None, val: str | None = None, holdout: float = 0.1, seed: int = 0,
                  device: str = "auto", workers: int = 0, allow_weak: bool = False, strict: bool = False) -> dict:
    """Train a classifier on real data with hard labels; save a safetensors checkpoint (``d4m teacher train``).

    Defaults (``d4m.train.teacher_recipe``): SGD (lr 0.05; 0.01 for ``convnet-w128``; weight decay 5e-4) for
    convolutional nets, AdamW (lr 1e-3, weight decay 0.05) for ``swin_t`` / ``vit_b_16``; linear warm-up over
    ``warmup`` epochs (default a tenth of the run, at most 5), then a cosine to zero per batch; label smoothing 0.1.
    Validation: ``val`` (KIND:PATH), else the data's val split, else (``folder:``) a seeded ``holdout`` fraction of
    each class, not trained on.

    Every epoch prints and records training loss, training and val top-1 in percent. A teacher at chance level
    (val top-1 below 1.5 x chance, or one class taking most of its predictions) raises ``d4m.errors.WeakTeacher``
    and is not written, unless ``allow_weak``. A class folder without images is skipped with a warning, or
    (``strict``) refused. Epochs, batch size, image size and the model are bounded before anything is allocated
    (``d4m.train.bounds``).

    Returns the record (``arch``, ``classes``, ``image_size``, ``val_top1`` %, ``train_top1`` %, ``val``,
    ``weak``, ``recipe``, ``history``: one dict per epoch), also kept in the checkpoint's metadata. Load the
    teacher as ``checkpoint:OUT``.

    Example::

        info = d4m.train_teacher("cifar100:~/data", "teachers/c100.safetensors", arch="convnet-w128")
        d4m.eval_teacher("checkpoint:teachers/c100.safetensors", "cifar100:~/data")
    """
    from d4m.evaluate.val import default_image_size
    from d4m.parallel import resolve_device
    from d4m.train.bounds import image_size
    from d4m.train.recipe import MAX_EPOCHS
    from d4m.train.teacher import train_teacher as train
    from d4m.train.teacher_recipe import teacher_recipe

    at_most("--epochs", epochs, MAX_EPOCHS)
    recipe = teacher_recipe(arch, epochs, optimizer, lr, weight_decay, warmup, label_smoothing)
    given = size
    size = default_image_size(data, size, strict)
    image_size("--size" if given else f"--size (from --data {data})", size)
    out = Path(out).expanduser()
    return train(data, arch, out, size, recipe, batch_size, resolve_device(device), workers, limit, seed,
                 out.parent / "log.jsonl", val, holdout, allow_weak, strict)


@documented("teacher eval")
def eval_teacher(teacher: str, val: str, *, limit: int | None = None, size: int | None = None, batch_size: int = 256,
                 device: str = "auto", workers: int = 0, log: str | Path | None = None, strict: bool = False) -> dict:
    """Top-1 of a teacher on a real validation set, its classes matched to the data's (``d4m teacher eval``).

    Returns ``{"top1": %, "images": n, "size": px}``.

    Example::

        d4m.eval_teacher("cifar-resnet20:weights/resnet20.th", "folder:/data/cifar10/test", limit=2000)["top1"]
    """
    from d4m.evaluate.val import ValSet, default_image_size
    from d4m.models import class_columns, load_teacher
    from d4m.parallel import resolve_device
    from d4m.runio import StageTimer
    from d4m.train.bounds import MAX_BATCH, image_size

    dev = resolve_device(device)
    whole("--limit", limit, 1, optional=True)
    at_most("--batch-size", batch_size, MAX_BATCH)
    whole("--workers", workers, 0)
    if size is not None:
        image_size("--size", size)
    model = load_teacher(teacher).to(dev)
    size = size or (default_image_size(val) if not val.startswith("folder:") else model.input_size)
    data = ValSet(val, size, limit=limit, workers=workers, strict=strict)
    model.columns = class_columns(model.classes, data.classes, f"--teacher {teacher}", data="the val set")
    with StageTimer(Path(log) if log else None, "teacher-eval", unit="images") as timer:
        top1 = data.top1(model, dev, batch_size)
        timer.items = len(data)
    return {"top1": top1, "images": len(data), "size": size}


@documented("subset")
def subset(run: str | Path | Run, classes: str, out: str | Path, *, copy: bool = False) -> dict:
    """D4M-G: restrict an ImageNet-1K run to the 200 Tiny-ImageNet classes, as a new run (``d4m subset``).

    Returns the subset's record (``num_classes``, ``num_images``, ``mode``, ...) with ``run``: the new ``Run``.

    Example::

        info = d4m.subset("runs/in1k-ipc50", "tiny-imagenet:/data/tiny-imagenet-200", "runs/in1k-ipc50-tiny")
        d4m.evaluate_run(info["run"], teacher=..., val="tiny-imagenet:/data/tiny-imagenet-200")
    """
    from d4m.evaluate.subset import make_subset

    info = make_subset(as_path(run), classes, Path(out).expanduser(), copy)
    return {**info, "run": Run(out)}
