"""The fair-evaluation card (``d4m evaluate --card``): one table that says what a distilled set is worth.

For one recipe, student, teacher and N seeds:

- ``soft``: top-1 of students trained on the distilled images with the teacher's soft labels (the headline);
- ``random``: the same, on a seeded random subset of real images with the same images per class and size
  (made by ``d4m select --method random``, which ``d4m.api`` composes with this module, in the shared baseline
  cache, ``d4m.evaluate.baseline_cache``: trained once per image set, student, recipe, teacher, seeds and val set, whatever distilled set the card judges);
- ``hard``: top-1 of students trained on the distilled images with cross-entropy on their class alone;
- ``full``: top-1 of hard-label training on the full real data, read from the teacher's record (its checkpoint
  metadata) or given by ``--full-data-acc``;
- ``IOR = soft - random`` (what the images add over real ones under the same soft labels) and
  ``HLR = full - hard`` (how much of the full data's accuracy the images lose without a teacher), DD-Ranking's
  definitions. Every accuracy is the last-epoch top-1, mean over seeds. Costs 2 x N trainings beyond the main one.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from d4m.data.datasets import first_readable_size
from d4m.errors import ConfigError
from d4m.evaluate.baseline_cache import baseline_dir, cached_summary
from d4m.evaluate.run import EvalJob, open_images, run_evaluation
from d4m.runio import atomic_write_text
from d4m.runio.textfiles import read_text

FORMAT = "d4m.card/1"


def _headline(summary: dict) -> dict:
    ms = summary["last_epoch_top1"]
    return {"mean": ms["mean"], "std": ms["std"], "n": ms["n"],
            "per_seed": [s["last_top1"] for s in summary["per_seed"]]}


def _read_yaml(path: Path) -> dict:
    """A run's config.yaml as a mapping ({} when absent); a damaged file is a one-line error naming it."""
    import yaml

    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(read_text(path, "run config"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return data or {}


def full_data_accuracy(teacher_spec: str, given: float | str | None, job: EvalJob | None = None) -> tuple[float, str]:
    """(top-1 %, where it came from): ``--full-data-acc N``; ``auto``: the teacher measured on the card's val set
    (``job.val``, its ``val_limit`` subset, the students' resolution); else the teacher's recorded val accuracy."""
    if given == "auto":
        if job is None:
            raise ConfigError("--full-data-acc auto: needs the evaluation's val set")
        return measured_teacher_accuracy(job)
    if given is not None:
        try:
            given = float(given)
        except (TypeError, ValueError):
            raise ConfigError(f"--full-data-acc {given}: a top-1 in percent or 'auto'") from None
        if not 0.0 <= given <= 100.0:
            raise ConfigError(f"--full-data-acc {given}: must be a top-1 in percent (0-100)")
        return float(given), "--full-data-acc"
    from d4m.models import load_teacher

    acc = load_teacher(teacher_spec).val_top1  # percent (older fraction records are converted on loading)
    if acc is None:
        raise ConfigError(f"--teacher {teacher_spec}: records no accuracy on the full data; give --full-data-acc "
                          "N or auto")
    return round(acc, 2), f"teacher record ({teacher_spec}; the teacher's architecture, hard labels)"


def measured_teacher_accuracy(job: EvalJob) -> tuple[float, str]:
    """The teacher's top-1 on the val images the students are tested on (its record may be on another split)."""
    from d4m.evaluate.val import ValSet, default_image_size
    from d4m.models import load_teacher

    size = default_image_size(job.val, job.size, job.strict)
    val = ValSet(job.val, size, limit=job.val_limit, workers=job.workers, strict=job.strict)
    teacher = load_teacher(job.teacher, classes=val.classes).to(job.device)
    acc = val.top1(teacher, job.device)
    subset = f", a seeded subset of {len(val)}" if job.val_limit else f", {len(val)} images"
    return acc, f"measured: teacher {job.teacher} on {job.val}{subset} at {size} px (--full-data-acc auto)"


def baseline_plan(job: EvalJob, train_data: str) -> tuple[Path, int, int]:
    """(run directory in the shared cache, images per class, image size) of the random real subset that matches
    ``job``'s images.

    Making that subset is a method's business (``d4m select --method random``); ``d4m.api`` composes the two.
    """
    images = open_images(job.images, job.strict)
    ipc = max(Counter(images.targets).values())
    out_size = first_readable_size(images)
    return baseline_dir(job, train_data, ipc, out_size, subset_seed=0), ipc, out_size


def baseline_job(job: EvalJob, base: Path) -> EvalJob:
    """``job`` with the random baseline's images in place of the distilled ones (results under ``base/eval``)."""
    return dataclasses.replace(job, images=base / "images", eval_root=base / "eval", labels_root=base / "labels",
                               log_path=base / "log.jsonl", command=f"{job.command} # random baseline")


def baseline_summary(job: EvalJob, base: Path) -> tuple[dict, bool]:
    """(summary, reused): the baseline's finished evaluation from the cache, else trained now."""
    rjob = baseline_job(job, base)
    cached = cached_summary(base, rjob)
    return (cached, True) if cached is not None else (run_evaluation(rjob), False)


def card_train_data(run: Path | None, train_data: str | None) -> str:
    """The real training data of the random baseline: ``--train-data``, else the run's config.yaml ``data``."""
    if train_data is None and run is not None:
        train_data = _read_yaml(Path(run) / "config.yaml").get("data")
    if not train_data:
        raise ConfigError("--card: no real training data known for the random baseline; give --train-data KIND:PATH")
    return train_data


def write_card(job: EvalJob, train_data: str, soft: dict, random: tuple[dict, bool], hard: dict,
               full: tuple[float, str], base: Path) -> dict:
    """The card from the three evaluation summaries and the full-data accuracy; writes card.json / card.md."""
    card = {"format": FORMAT, "images": str(job.images), "student": job.student, "recipe": job.recipe.name,
            "epochs": job.recipe.epochs, "teacher": job.teacher, "seeds": job.seeds, "val": job.val,
            "val_limit": job.val_limit, "train_data": train_data, "metric": "last-epoch top-1 %, mean over seeds",
            "soft": _headline(soft), "random": {**_headline(random[0]), "images": str(base / "images"),
                                                "reused": random[1]},
            "hard": _headline(hard), "full": {"mean": full[0], "source": full[1]}}
    card["IOR"] = _diff(card["soft"]["mean"], card["random"]["mean"])
    card["HLR"] = _diff(full[0], card["hard"]["mean"])
    card["command"] = job.command
    out = job.eval_root / job.student / job.recipe.name
    atomic_write_text(out / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(out / "card.md", card_markdown(card))
    card["path"] = str(out / "card.json")
    return card


def _diff(a, b):
    return None if a is None or b is None else round(a - b, 2)


def _fmt(ms: dict) -> str:
    if ms.get("mean") is None:
        return "-"
    return f"{ms['mean']:.2f} ± {ms['std']:.2f}" if ms.get("std") is not None else f"{ms['mean']:.2f}"


def card_table(card: dict) -> str:
    return "\n".join([
        "| soft (distilled, soft labels) | random (real, soft labels) | hard (distilled, CE) | full data (hard) "
        "| IOR = soft - random | HLR = full - hard |",
        "|---|---|---|---|---|---|",
        f"| {_fmt(card['soft'])} | {_fmt(card['random'])} | {_fmt(card['hard'])} | {_fmt(card['full'])} "
        f"| {card['IOR']:+.2f} | {card['HLR']:+.2f} |" if card["IOR"] is not None and card["HLR"] is not None else
        f"| {_fmt(card['soft'])} | {_fmt(card['random'])} | {_fmt(card['hard'])} | {_fmt(card['full'])} | - | - |"])


def card_markdown(card: dict, short: bool = False) -> str:
    table = card_table(card)
    if short:
        return table
    limit = f" (a seeded subset of {card['val_limit']} images)" if card.get("val_limit") else ""
    return (f"# Fair-evaluation card: {card['images']}\n\n{table}\n\n"
            f"Student {card['student']}, recipe {card['recipe']} ({card['epochs']} epochs), teacher {card['teacher']}, "
            f"{card['seeds']} seed(s); {card['metric']} on the real validation images of {card['val']}{limit}. "
            f"random: {card['random']['images']} (a seeded random subset of {card['train_data']}). "
            f"full data: {card['full']['source']}.\n\n"
            "IOR (improvement over random) = soft - random; HLR (hard-label recovery gap) = full - hard.\n\n"
            f"Command:\n\n```\n{card['command']}\n```\n")
