"""``d4m report`` (a self-contained HTML report of a run) and ``d4m export`` (a Hugging Face dataset)."""

from __future__ import annotations

from d4m import api
from d4m.errors import ConfigError


ALLOW_HELP = ("use a run whose images do not match its manifest (missing, extra or changed files), for "
              "inspection; without it such a run is refused")


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
    p.add_argument("--run", required=True, help="run directory (report goes to RUN/report/)")
    p.add_argument("--teacher", help="teacher SPEC for the t-SNE panel (skipped without it)")
    p.add_argument("--classes", type=int, default=20, help="classes shown in the grid (default 20; t-SNE: 10)")
    p.add_argument("--per-class", type=int, default=10, help="images per class in the grid (default 10)")
    p.add_argument("--real-per-class", type=int, default=100, help="real images per class in the t-SNE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--allow-incomplete", action="store_true", help=ALLOW_HELP)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a run's images (and soft labels): a Hugging Face dataset or DD-Ranking")
    p.add_argument("--run", required=True)
    p.add_argument("--to", nargs=2, metavar=("FORMAT", "DIR"), required=True, help="hf DIR or ddranking DIR")
    p.add_argument("--teacher", help="soft labels: the teacher's logits on each whole image (hf: soft_label "
                   "column; ddranking: labels.pt)")
    p.add_argument("--dataset", help="ddranking: its dataset name (CIFAR10, CIFAR100, TinyImageNet, ImageNet1K); "
                   "default: from the run's --data")
    p.add_argument("--recipe", default="paper", help="ddranking: the d4m recipe its config.yaml carries (default paper)")
    p.add_argument("--label-mode", default="M", choices=("M", "S"), help="ddranking: soft_label_mode in config.yaml "
                   "(M: its teachers relabel each batch; S: labels.pt)")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="replace an earlier export in DIR (a folder d4m did not "
                   "make is never written into)")
    p.add_argument("--allow-incomplete", action="store_true", help=ALLOW_HELP)
    p.set_defaults(func=cmd_export)
