"""Reporting and export as functions: ``make_report`` (one self-contained HTML page), ``export`` (other formats)."""

from __future__ import annotations

from pathlib import Path

from d4m.api.run import Run, as_path
from d4m.errors import ConfigError
from d4m.settings import documented


@documented("report")
def make_report(run: str | Path | Run, *, teacher: str | None = None, classes: int = 20, per_class: int = 10,
           real_per_class: int = 100, seed: int = 0, device: str = "auto", allow_incomplete: bool = False) -> Path:
    """``RUN/report/report.html`` (self-contained) and its PNG figures: image grid beside real images, t-SNE of
    teacher features (with ``teacher``), the cards, per-stage time and memory, config, manifest (``d4m report``).

    Example::

        page = d4m.make_report("runs/c10-ipc10", teacher="cifar-resnet20:weights/resnet20.th")
    """
    from d4m.parallel import resolve_device
    from d4m.report.build import build_report

    if classes < 1 or per_class < 1 or real_per_class < 1:
        raise ConfigError("--classes, --per-class and --real-per-class must be >= 1")
    return build_report(as_path(run), teacher, classes, per_class, real_per_class, seed=seed,
                        device=resolve_device(device), allow_incomplete=allow_incomplete)


@documented("export")
def export(run: str | Path | Run, to: str, out: str | Path, *, teacher: str | None = None, device: str = "auto",
           force: bool = False, allow_incomplete: bool = False, **options) -> Path:
    """Export a run's images (and the teacher's soft labels) in another tool's format (``d4m export --to FMT OUT``).

    ``to`` names an exporter of ``d4m.report.export.EXPORTERS``: ``"hf"``, a Hugging Face ``datasets`` dataset
    (``datasets.load_from_disk(out)`` reads it); ``"ddranking"``, DD-Ranking's layout (``options``: ``dataset``,
    ``recipe``, ``mode``; see ``d4m.report.ddranking``).

    Example::

        folder = d4m.export(run, to="hf", out="exports/c10-ipc10", teacher="cifar-resnet20:FILE")
        folder = d4m.export(run, to="ddranking", out="exports/c10-dd", teacher="cifar-resnet20:FILE")
    """
    from d4m.parallel import resolve_device
    from d4m.report.export import export as export_run

    folder, _ = export_run(as_path(run), to, out, teacher=teacher, device=resolve_device(device), force=force,
                           allow_incomplete=allow_incomplete, **options)
    return Path(folder)
