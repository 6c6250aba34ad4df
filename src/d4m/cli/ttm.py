"""Sub-commands of the second half of D4M: relabel, evaluate, teacher {train,eval}, subset. Thin: parse and call."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from d4m.errors import ConfigError
from d4m.parallel import resolve_device



def _where(args) -> tuple[Path, Path, Path, Path]:
    """(images dir, labels root, eval root, log path) from --run or --images (+ --out)."""
    if bool(args.run) == bool(args.images):
        raise ConfigError("give exactly one of --run RUN or --images DIR")
    if args.run:
        run = Path(args.run).expanduser()
        if not (run / "images").is_dir():
            raise ConfigError(f"--run {run}: no images/ folder (not a d4m run directory)")
        out = Path(args.out).expanduser() if args.out else run / "eval"
        return run / "images", run / "labels", out, run / "log.jsonl"
    images = Path(args.images).expanduser()
    out = Path(args.out).expanduser() if args.out else images.resolve().parent / "eval"
    return images, out / "labels", out, out / "log.jsonl"


def _command(args) -> str:
    """The command line that reproduces this run, with every option spelled out (defaults resolved)."""
    words = ["d4m", args.command]
    for key, value in vars(args).items():
        if key in ("func", "command", "verbose") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


def _common(p: argparse.ArgumentParser, student: bool) -> None:
    src = p.add_argument_group("distilled images")
    src.add_argument("--run", help="a d4m run directory (uses RUN/images, writes under RUN/)")
    src.add_argument("--images", help="any ImageFolder of distilled images (results under --out)")
    p.add_argument("--teacher", required=True, help="torchvision:NAME | cifar-resnet20:FILE | cifar-resnet56:FILE | "
                   "checkpoint:FILE")
    p.add_argument("--recipe", default="paper", help="paper, locked, ddranking or a YAML file (default: paper)")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--size", type=int, help="image size (default: from --val: cifar 32, tiny 64, imagenet 224)")
    p.add_argument("--topk", type=int, default=0, help="store only the top K logits (+ the mean of the rest)")
    p.add_argument("--label-format", choices=("fp16", "fp32"), default="fp16", help="full-logit storage precision")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--out", help="output folder (default RUN/eval or DIR/../eval)")
    if student:
        p.add_argument("--student", default="convnet-w128", help="student architecture (default convnet-w128)")
        p.add_argument("--val", required=True, help="real data KIND:PATH; its val split is the test set")
        p.add_argument("--seeds", type=int, default=1, help="independent students (default 1)")
        p.add_argument("--labels", choices=("stored", "online", "hard"), default="stored",
                       help="stored: relabel once, replay; online: teacher inside the training loop; "
                       "hard: cross-entropy on the class labels alone (results under RECIPE-hard)")
        p.add_argument("--val-limit", type=int, help="test on a seeded subset of this many val images")
        p.add_argument("--card", action="store_true", help="fair-evaluation card: also the random baseline and "
                       "hard labels (2 x SEEDS more students); writes card.json / card.md")
        p.add_argument("--train-data", help="card: real training data KIND:PATH for the random baseline "
                       "(default: the run's config.yaml data)")
        p.add_argument("--full-data-acc", help="card: top-1 %% of hard-label training on the full real data, or "
                       "'auto' (the teacher measured on --val); default: the teacher's recorded accuracy")
        p.add_argument("--batch-size", type=int, default=0,
                       help="physical batch; the recipe's batch is reached by gradient accumulation")
        p.add_argument("--eval-every", type=int, default=1, help="val top-1 every N epochs (and the last)")
    else:
        p.add_argument("--val", help="real data KIND:PATH, only to pick the default --size")


def cmd_relabel(args) -> int:
    from d4m.evaluate.run import label_set_name, open_images
    from d4m.parallel import topology
    from d4m.evaluate.val import default_image_size
    from d4m.labels import LabelStore, StreamImages, relabel
    from d4m.models import load_teacher
    from d4m.train import load_recipe

    images_dir, labels_root, _, log = _where(args)
    recipe = load_recipe(args.recipe, args.epochs)
    images = open_images(images_dir)
    teacher = load_teacher(args.teacher, classes=images.classes)
    size = default_image_size(args.val, args.size) if (args.val or args.size) else teacher.input_size
    fmt = "topk" if args.topk else args.label_format
    store = LabelStore(labels_root / (args.name or label_set_name(teacher.arch, recipe, fmt, args.topk)))
    meta = relabel(StreamImages(images, recipe.stream(len(images), size)), teacher, store, recipe.epochs, fmt,
                   args.topk, resolve_device(args.device), args.workers, log,
                   extra_meta={"images": str(images_dir), "recipe": recipe.name}, topo=topology(args.device))
    print(f"labels: {store.root} ({meta['epochs_stored']} epochs, {meta['bytes']} bytes, "
          f"{meta['bytes_per_image_epoch']} bytes per image-epoch)")
    return 0


def cmd_evaluate(args) -> int:
    from d4m.evaluate.run import EvalJob, run_evaluation, summary_table
    from d4m.parallel import topology
    from d4m.train import load_recipe

    if args.seeds < 1 or args.eval_every < 1:
        raise ConfigError("--seeds and --eval-every must be >= 1")
    images_dir, labels_root, eval_root, log = _where(args)
    job = EvalJob(images=images_dir, val=args.val, teacher=args.teacher, student=args.student,
                  recipe=load_recipe(args.recipe, args.epochs), eval_root=eval_root, labels_root=labels_root,
                  seeds=args.seeds, labels=args.labels, label_format=args.label_format, topk=args.topk,
                  size=args.size, device=resolve_device(args.device), workers=args.workers,
                  physical_batch=args.batch_size, eval_every=args.eval_every, val_limit=args.val_limit, log_path=log,
                  command=_command(args), topo=topology(args.device))
    if args.val_limit is not None and args.val_limit < 1:
        raise ConfigError(f"--val-limit {args.val_limit}: must be >= 1")
    if args.card:
        from d4m.evaluate.card import card_markdown, run_card

        card = run_card(job, Path(args.run).expanduser() if args.run else None, args.train_data, args.full_data_acc)
        print(card_markdown(card, short=True))
        print(f"card: {card['path']}")
        return 0
    summary = run_evaluation(job)
    print(summary_table(summary))
    print(f"results: {eval_root / args.student / job.recipe.name}")
    return 0


def cmd_teacher_train(args) -> int:
    from d4m.data import DataSpec
    from d4m.evaluate.val import ValSet, default_image_size
    from d4m.train.teacher import train_teacher

    size = default_image_size(args.data, args.size)
    device = resolve_device(args.device)
    evaluate = None
    if DataSpec.parse(args.data).kind != "folder":
        evaluate = lambda m: ValSet(args.data, size, workers=args.workers).top1(m, device)  # noqa: E731
    out = Path(args.out).expanduser()
    info = train_teacher(args.data, args.arch, out, size, args.epochs, args.batch_size, args.lr, device,
                         args.workers, args.limit, args.seed, out.parent / "log.jsonl", evaluate)
    print(f"teacher: {out} {json.dumps(info)}")
    return 0


def cmd_teacher_eval(args) -> int:
    from d4m.evaluate.val import ValSet, default_image_size
    from d4m.models import class_columns, load_teacher
    from d4m.runio import StageTimer

    device = resolve_device(args.device)
    teacher = load_teacher(args.teacher).to(device)
    size = args.size or (default_image_size(args.val) if not args.val.startswith("folder:") else teacher.input_size)
    val = ValSet(args.val, size, limit=args.limit, workers=args.workers)
    teacher.columns = class_columns(teacher.classes, val.classes, f"--teacher {args.teacher}")
    with StageTimer(Path(args.log) if args.log else None, "teacher-eval", unit="images") as timer:
        top1 = val.top1(teacher, device, args.batch_size)
        timer.items = len(val)
    print(f"{args.teacher}: top-1 {top1:.2f}% on {len(val)} images of {args.val} at {size}px")
    return 0


def cmd_subset(args) -> int:
    from d4m.evaluate.subset import make_subset

    info = make_subset(Path(args.run).expanduser(), args.classes, Path(args.out).expanduser(), args.copy)
    print(f"subset: {args.out} ({info['num_classes']} classes, {info['num_images']} images, {info['mode']})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("relabel", help="store a teacher's soft labels for the TTM stream, per epoch")
    _common(p, student=False)
    p.add_argument("--name", help="label set name under labels/ (default TEACHER-RECIPE-FORMAT)")
    p.set_defaults(func=cmd_relabel)

    p = subparsers.add_parser("evaluate", help="train students with soft labels, test on the real val set")
    _common(p, student=True)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("teacher", help="train or evaluate a teacher")
    sub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a classifier on real data; saves a safetensors checkpoint")
    t.add_argument("--data", required=True, help="KIND:PATH of the training data")
    t.add_argument("--arch", default="convnet-w128", help="architecture (see d4m.models.MODELS)")
    t.add_argument("--out", required=True, help="output .safetensors file (load with checkpoint:FILE)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--size", type=int, help="image size (default from --data)")
    t.add_argument("--limit", type=int, help="train on a seeded subset of this many images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--workers", type=int, default=0)
    t.set_defaults(func=cmd_teacher_train)
    e = sub.add_parser("eval", help="top-1 of a teacher on a real val set (class order checked)")
    e.add_argument("--teacher", required=True)
    e.add_argument("--val", required=True, help="KIND:PATH (folder:PATH uses all its images)")
    e.add_argument("--limit", type=int, help="a seeded subset of this many images")
    e.add_argument("--size", type=int, help="input size (default: the data's, folder: the teacher's)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--log", help="append timing to this log.jsonl")
    e.set_defaults(func=cmd_teacher_eval)

    p = subparsers.add_parser("subset", help="D4M-G: restrict an ImageNet run to the Tiny-ImageNet classes")
    p.add_argument("--run", required=True, help="the ImageNet-1K d4m run")
    p.add_argument("--classes", required=True, help="tiny-imagenet:ROOT (its wnids.txt) or a file of wnids")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--copy", action="store_true", help="copy images instead of symlinking")
    p.set_defaults(func=cmd_subset)
