"""Sub-commands of the second half of D4M: relabel, evaluate, teacher {train,eval}, subset. Thin: parse and call."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from d4m import api
from d4m.settings import add_flags


def _command(args) -> str:
    """The command line that reproduces this run, with every option spelled out (defaults resolved)."""
    words = ["d4m", args.command]
    for key, value in vars(args).items():
        if key in ("func", "command", "verbose") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


def cmd_relabel(args) -> int:
    meta = api.relabel(args.run, images=args.images, teacher=args.teacher, recipe=args.recipe, epochs=args.epochs,
                       size=args.size, val=args.val, topk=args.topk, label_format=args.label_format, name=args.name,
                       out=args.out, device=args.device, workers=args.workers,
                       allow_incomplete=args.allow_incomplete, strict=args.strict)
    print(f"labels: {meta['path']} ({meta['epochs_stored']} epochs, {meta['bytes']} bytes, "
          f"{meta['bytes_per_image_epoch']} bytes per image-epoch)")
    return 0


def cmd_evaluate(args) -> int:
    from d4m.evaluate.card import card_markdown
    from d4m.evaluate.run import summary_table

    result = api.evaluate_run(
        args.run, images=args.images, teacher=args.teacher, val=args.val, student=args.student, recipe=args.recipe,
        epochs=args.epochs, seeds=args.seeds, labels=args.labels, label_format=args.label_format, topk=args.topk,
        size=args.size, val_limit=args.val_limit, micro_batch=args.micro_batch, eval_every=args.eval_every,
        out=args.out, device=args.device, workers=args.workers, card=args.card, train_data=args.train_data,
        full_data_acc=args.full_data_acc, command=_command(args), allow_incomplete=args.allow_incomplete,
        strict=args.strict)
    if args.card:
        print(card_markdown(result, short=True))
        print(f"card: {result['path']}")
    else:
        print(summary_table(result))
        print(f"results: {result['path']}")
    return 0


def cmd_teacher_train(args) -> int:
    info = api.train_teacher(args.data, args.out, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                             warmup=args.warmup, label_smoothing=args.label_smoothing, size=args.size,
                             limit=args.limit, val=args.val, holdout=args.holdout, seed=args.seed,
                             device=args.device, workers=args.workers, allow_weak=args.allow_weak,
                             strict=args.strict)
    brief = {k: v for k, v in info.items() if k != "history"}
    print(f"teacher: {Path(args.out).expanduser()} {json.dumps(brief)}")
    return 0


def cmd_teacher_eval(args) -> int:
    r = api.eval_teacher(args.teacher, args.val, limit=args.limit, size=args.size, batch_size=args.batch_size,
                         device=args.device, workers=args.workers, log=args.log, strict=args.strict)
    print(f"{args.teacher}: top-1 {r['top1']:.2f}% on {r['images']} images of {args.val} at {r['size']}px")
    return 0


def cmd_subset(args) -> int:
    info = api.subset(args.run, args.classes, args.out, copy=args.copy)
    print(f"subset: {args.out} ({info['num_classes']} classes, {info['num_images']} images, {info['mode']})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("relabel", help="store a teacher's soft labels for the TTM stream, per epoch")
    add_flags(p, "relabel")
    p.set_defaults(func=cmd_relabel)

    p = subparsers.add_parser("evaluate", help="train students with soft labels, test on the real val set")
    add_flags(p, "evaluate")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("teacher", help="train or evaluate a teacher")
    sub = p.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train a classifier on real data; saves a safetensors checkpoint")
    add_flags(t, "teacher train")
    t.set_defaults(func=cmd_teacher_train)
    e = sub.add_parser("eval", help="top-1 of a teacher on a real val set (class order checked)")
    add_flags(e, "teacher eval")
    e.set_defaults(func=cmd_teacher_eval)

    p = subparsers.add_parser("subset", help="D4M-G: restrict an ImageNet run to the Tiny-ImageNet classes")
    add_flags(p, "subset")
    p.set_defaults(func=cmd_subset)
