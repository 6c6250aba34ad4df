"""``d4m report`` (a self-contained HTML report of a run) and ``d4m export`` (a Hugging Face dataset)."""

from __future__ import annotations

from d4m.errors import ConfigError
from d4m.parallel import resolve_device


def cmd_report(args) -> int:
    from d4m.report.build import build_report

    if args.classes < 1 or args.per_class < 1 or args.real_per_class < 1:
        raise ConfigError("--classes, --per-class and --real-per-class must be >= 1")
    page = build_report(args.run, args.teacher, args.classes, args.per_class, args.real_per_class,
                        seed=args.seed, device=resolve_device(args.device))
    print(f"report: {page}")
    return 0


def cmd_export(args) -> int:
    from d4m.report.export import export_hf

    kind, target = args.to
    if kind != "hf":
        raise ConfigError(f"--to {kind}: unknown format (expected: --to hf DIR)")
    out, n = export_hf(args.run, target, args.teacher, resolve_device(args.device), args.force)
    print(f"export: {n} images -> {out} (datasets.load_from_disk)")
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
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a run's images (and soft labels) as a Hugging Face dataset")
    p.add_argument("--run", required=True)
    p.add_argument("--to", nargs=2, metavar=("FORMAT", "DIR"), required=True, help="hf DIR")
    p.add_argument("--teacher", help="add a soft_label column: the teacher's logits on each whole image")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    p.set_defaults(func=cmd_export)
