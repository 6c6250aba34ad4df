"""``d4m report``: RUN/report/report.html (self-contained) plus the PNG figures beside it.

Sections: distilled vs real image grid for up to 20 classes (paper Fig. 4/5); t-SNE of teacher features of the
distilled images over real images of the same classes (Fig. 7, needs a teacher); the fair-evaluation card(s);
per-stage time and peak memory from log.jsonl (Table 6); the configuration; a manifest summary.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from d4m.data import open_dataset
from d4m.data.classnames import display_name, known_label_texts
from d4m.errors import D4MError
from d4m.evaluate.run import open_images
from d4m.models.classes import normalise, same_class
from d4m.report import html
from d4m.report.figures import image_grid, tsne_embedding, tsne_figure
from d4m.runio import StageTimer, atomic_write_text
from d4m.runio.rundir import read_jsonl
from d4m.runio.verify import read_run
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)
MANIFEST_KEYS = ("method", "generator", "codec", "init", "strength", "guidance", "steps", "model", "features")


def _pick(indices: list[int], k: int, seed: int, c: int) -> list[int]:
    order = torch.randperm(len(indices), generator=cpu_generator(seed, "report", c)).tolist()
    return [indices[j] for j in order[:k]]


def real_classes(cfg: dict, names: list[str]):
    """(dataset, per shown class its real indices) from the run's config data; (None, note) when unavailable."""
    if not cfg.get("data"):
        return None, "the run's config.yaml names no data"
    try:
        data = open_dataset(cfg["data"], "train", download=False)
    except D4MError as exc:
        return None, f"cannot open {cfg['data']} ({exc})"
    per_class = {c: [] for c in range(len(data.classes))}
    for i, t in enumerate(data.targets):
        per_class[t].append(i)
    out = []
    for name in names:
        hits = [c for c, d in enumerate(data.classes) if same_class(d, name)]
        if len(hits) != 1:
            return None, f"class {name!r} not found in {cfg['data']}"
        out.append(per_class[hits[0]])
    return data, out


def label_texts(run, classes: list[str], data) -> list[str | None]:
    """Each class's label text: the run's prototypes metadata, else the real dataset's, else the ImageNet table."""
    ids = [normalise(c) for c in classes]
    if run.prototypes.is_file():
        from d4m.runio.tensors import load_tensors

        try:
            meta = load_tensors(run.prototypes)[1]
        except D4MError:
            meta = {}
        if len(meta.get("label_texts") or []) == len(classes):
            return list(meta["label_texts"])
    if data is not None:
        texts = {normalise(c): t for c, t in zip(data.classes, data.label_texts)}
        if all(i in texts for i in ids):
            return [texts[i] for i in ids]
    return known_label_texts(ids) or [None] * len(classes)


def class_rows(classes: list[str], texts: list, targets: list[int]) -> list[dict]:
    counts = Counter(targets)
    return [{"index": c, "class id": normalise(name), "label text": text, "distilled images": counts.get(c, 0)}
            for c, (name, text) in enumerate(zip(classes, texts))]


def _tensor(img: Image.Image, size: int) -> torch.Tensor:
    img = img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)


def tsne_panel(teacher_spec, images, shown, real, data, out: Path, real_per_class: int, seed: int, device: str,
               names: list[str]):
    from d4m.methods.features import teacher_features
    from d4m.models import load_teacher

    teacher = load_teacher(teacher_spec, classes=images.classes, data="the distilled images").to(device)
    size = teacher.input_size
    batch, labels, syn = [], [], []
    for r, c in enumerate(tqdm(shown, desc="t-SNE features", unit="class")):
        for i in [i for i, t in enumerate(images.targets) if t == c]:
            batch.append(_tensor(images.load(i), size)), labels.append(r), syn.append(True)
        if real is not None:
            for i in _pick(real[r], real_per_class, seed + 1, c):
                batch.append(_tensor(data.load(i), size)), labels.append(r), syn.append(False)
    feats = teacher_features(teacher, torch.stack(batch)).numpy()
    xy = tsne_embedding(feats, seed)
    return tsne_figure(xy, np.array(labels), np.array(syn), names, out / "tsne.png",
                       f"t-SNE of {teacher.arch} features: {sum(syn)} distilled over {len(syn) - sum(syn)} real")


def stage_rows(log_path: Path) -> list[dict]:
    keys = ("stage", "wall_s", "images", "images_per_s", "image_epochs", "cpu_peak_rss_mb", "cuda_peak_alloc_mb",
            "world", "time")
    return [{k: rec.get(k) for k in keys} for rec in read_jsonl(log_path, strict=False)]


def manifest_summary(rows: list[dict], cfg: dict) -> dict:
    per_class = Counter(r.get("class_index") for r in rows)
    out = {"images": len(rows), "classes": len(per_class),
           "images per class": f"{min(per_class.values())}-{max(per_class.values())}" if per_class else None,
           "method": (cfg.get("extras") or {}).get("method") or "d4m"}
    for key in MANIFEST_KEYS:
        values = sorted({json.dumps(r.get(key)) for r in rows if key in r})
        if values:
            out[key] = ", ".join(json.loads(v) if isinstance(json.loads(v), str) else v for v in values)
    skipped = sum(int(r.get("source_files_skipped") or 0) for r in rows)
    if skipped:
        out["source files skipped (sum over images)"] = skipped
    return out


def build_report(run_path, teacher: str | None = None, max_classes: int = 20, per_class: int = 10,
                 real_per_class: int = 100, tsne_classes: int = 10, seed: int = 0, device: str = "cpu",
                 allow_incomplete: bool = False) -> Path:
    run, cfg, rows = read_run(run_path, allow_incomplete)
    out = run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    images = open_images(run.images)
    shown = list(range(min(max_classes, len(images.classes))))
    sections = []
    with StageTimer(run.log, "report", unit="images") as timer:
        data, real = real_classes(cfg, [images.classes[c] for c in shown])
        missing, real = (real, None) if data is None else ("", real)
        texts = label_texts(run, images.classes, data)
        names = [display_name(normalise(images.classes[c]), texts[c]) for c in shown]
        distilled = [[images.load(i) for i in [i for i, t in enumerate(images.targets) if t == c][:per_class]]
                     for c in tqdm(shown, desc="report images", unit="class")]
        real_imgs = [[data.load(i) for i in _pick(real[r], len(distilled[r]), seed, c)]  # as many as distilled
                     for r, c in enumerate(shown)] if data is not None else [[] for _ in shown]
        timer.items = sum(map(len, distilled)) + sum(map(len, real_imgs))
        title = f"{run.path.name}: first {per_class} distilled images per class"
        title += ", real images right" if data is not None else ""
        grid = image_grid(distilled, real_imgs, names, out / "grid.png", title)
        note = f'<p class="note">No real images: {html.esc(missing)}.</p>' if missing else ""
        sections.append((f"Images ({len(shown)} of {len(images.classes)} classes)",
                         note + html.inline_png(grid, "grid")))
        if teacher:
            t_shown = shown[:tsne_classes]
            fig = tsne_panel(teacher, images, t_shown, real, data, out, real_per_class, seed, device,
                             names[:len(t_shown)])
            sections.append(("t-SNE of teacher features", html.inline_png(fig, "t-SNE")))
        else:
            sections.append(("t-SNE of teacher features",
                             '<p class="note">Skipped: no --teacher given (the panel needs teacher features).</p>'))
        cards = sorted((run.path / "eval").glob("*/*/card.json")) if (run.path / "eval").is_dir() else []
        body = "".join(f"<h3>{html.esc(p.parent.relative_to(run.path))}</h3>"
                       + html.card_section(json.loads(p.read_text())) for p in cards)
        sections.append(("Fair-evaluation card", body or html.card_section(None)))
        sections.append(("Stages: time and peak memory (log.jsonl)", html.table(stage_rows(run.log))))
        sections.append(("Manifest", html.table([manifest_summary(rows, cfg)])))
        sections.append(("Classes", html.table(class_rows(images.classes, texts, images.targets))))
        text = run.config.read_text(encoding="utf-8") if run.config.is_file() else "(no config.yaml)"
        sections.append(("Configuration (config.yaml)", html.pre(text)))
        page = out / "report.html"
        atomic_write_text(page, html.render(f"d4m report: {run.path.name}", sections))
    log.info("report: %s", page)
    return page
