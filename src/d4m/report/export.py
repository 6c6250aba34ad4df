"""``d4m export --to FORMAT DIR``: ``export(run, to, out)`` dispatches by format name to an exporter in ``EXPORTERS``.

``hf``: a run's images as a Hugging Face ``datasets`` dataset (``load_from_disk`` reads it).
``ddranking``: images, tensors, soft labels and a config for DD-Ranking (``d4m.report.ddranking``).

Columns: ``image`` (PNG), ``label`` (ClassLabel in the run's class order), ``class_name``, ``file`` (path in the
run) and, with a teacher, ``soft_label``: the teacher's logits on the whole image (no crop, no mixing). The
per-epoch TTM labels of ``d4m relabel`` belong to augmented crops, not to images, so they are not exported.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from d4m.errors import ConfigError
from d4m.evaluate.run import open_images
from d4m.models.classes import normalise
from d4m.runio import StageTimer
from d4m.runio.rundir import RunDir
from d4m.runio.verify import read_run


def export_hf(run_path, out: str | Path, teacher: str | None = None, device: str = "cpu", force: bool = False,
              allow_incomplete: bool = False):
    try:
        import datasets
    except ImportError:
        raise ConfigError("--to hf needs the 'datasets' package: pip install 'd4m[export]'") from None
    run, cfg, _ = read_run(run_path, allow_incomplete)
    out = Path(out).expanduser()
    target = RunDir(out, "export")
    target.claim_output("--to hf", force)  # a folder d4m did not make is refused whatever the flags
    images = open_images(run.images)
    names = [normalise(c).replace(" ", "_") for c in images.classes]
    files = [Path(images.describe(i)) for i in range(len(images))]
    columns = {"image": [str(f) for f in files], "label": list(images.targets),
               "class_name": [names[t] for t in images.targets],
               "file": [f.relative_to(run.path).as_posix() for f in files]}
    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=names),
                "class_name": datasets.Value("string"), "file": datasets.Value("string")}
    with StageTimer(run.log, "export-hf", unit="images", to=str(out)) as timer:
        if teacher:
            columns["soft_label"] = _teacher_logits(teacher, images, device)
            features["soft_label"] = datasets.Sequence(datasets.Value("float32"))
        ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        ds.info.description = json.dumps({"d4m_run": str(run.path), "method": (cfg.get("extras") or {}).get(
            "method") or "d4m", "data": cfg.get("data"), "soft_label_teacher": teacher})
        ds = ds.cast_column("image", datasets.Image())
        ds.save_to_disk(str(out))
        timer.items = len(ds)
    target.finish_output()
    return out, len(ds)


@torch.no_grad()
def _teacher_logits(spec: str, images, device: str) -> list[list[float]]:
    from torchvision.transforms.v2 import functional as TF

    from d4m.models import load_teacher

    teacher = load_teacher(spec, classes=images.classes, data="the distilled images").to(device)
    out = []
    for i in tqdm(range(len(images)), desc="soft labels", unit="img"):
        x = TF.to_dtype(TF.pil_to_tensor(images.load(i)), torch.float32, scale=True)[None].to(device)
        out.append([float(v) for v in teacher(x)[0].cpu()])
    return out


def _ddranking(*args, **kwargs):
    from d4m.report.ddranking import export_ddranking

    return export_ddranking(*args, **kwargs)


# format name -> exporter(run, out, teacher=None, device="cpu", force=False, **options) -> (out, number of images)
EXPORTERS = {"hf": export_hf, "ddranking": _ddranking}


def export(run, to: str, out: str | Path, **options):
    """Export run ``run`` in format ``to`` (a name in ``EXPORTERS``) into ``out``; return (out, number of images).

    Example::

        export("runs/c10-ipc10", "ddranking", "exports/c10", teacher="cifar-resnet20:resnet20.th")
    """
    if to not in EXPORTERS:
        raise ConfigError(f"--to {to}: unknown format (one of {', '.join(EXPORTERS)})")
    check_format(Path(out).expanduser(), to)
    return EXPORTERS[to](run, out, **options)


# the files by which each format's export folder is known (an export folder holds one format, never a mixture)
FORMAT_FILES = {"hf": ("state.json", "dataset_info.json"),
                "ddranking": ("images.pt", "labels.pt", "lr.pt", "config.yaml", "images")}


def check_format(out: Path, to: str) -> None:
    """A d4m export folder is reused (with --force) only for the format it holds: an hf export is not a
    DD-Ranking target, nor the other way round (their files would mix)."""
    from d4m.runio.rundir import folder_kind

    if not out.is_dir() or folder_kind(out) != "export":
        return  # a new folder, or not an export: the exporter's claim_output decides
    for fmt, names in FORMAT_FILES.items():
        found = [n for n in names if fmt != to and (out / n).exists()]
        if found:
            raise ConfigError(f"--to {to} {out}: holds a {fmt} export ({found[0]}); d4m never mixes two export "
                              "formats in one folder, so choose another")
