"""``d4m report`` (a self-contained HTML report of a run) and ``d4m export`` (a Hugging Face dataset)."""

from __future__ import annotations

from d4m import api
from d4m.errors import ConfigError
from d4m.settings import add_flags



def cmd_report(args) -> int:
    page = api.make_report(args.run, teacher=args.teacher, classes=args.classes, per_class=args.per_class,
                           real_per_class=args.real_per_class, seed=args.seed, device=args.device,
                           allow_incomplete=args.allow_incomplete)
    print(f"report: {page}")
    return 0


_HOW = {"hf": "datasets.load_from_disk", "ddranking": "DD-Ranking: images/, images.pt, labels.pt, config.yaml"}


def cmd_export(args) -> int:
    kind, target = args.to
    options = {}
    if kind == "ddranking":
        options = {"dataset": args.dataset, "recipe": args.recipe, "mode": args.label_mode}
    elif args.dataset or args.recipe != "paper" or args.label_mode != "M":
        raise ConfigError("--dataset, --recipe and --label-mode apply to --to ddranking only")
    out = api.export(args.run, to=kind, out=target, teacher=args.teacher, device=args.device, force=args.force,
                     allow_incomplete=args.allow_incomplete, **options)
    print(f"export: {out} ({_HOW.get(kind, kind)})")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="HTML report of a run: image grids, t-SNE, card, time and memory")
    add_flags(p, "report")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a run's images (and soft labels): a Hugging Face dataset or DD-Ranking")
    add_flags(p, "export")
    p.set_defaults(func=cmd_export)
