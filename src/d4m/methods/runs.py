"""Baseline and ablation run directories, laid out like a D4M run (config.yaml, images/, manifest.jsonl, log.jsonl).

``select_run``: random / kcenter / herding picks of real images, re-encoded as PNG at the output size.
``stm_run``: a run's images optimised for the teacher's BatchNorm statistics (d4m.methods.stm).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from d4m.config import DistillConfig, merge, validate
from d4m.data import DataSpec, open_dataset
from d4m.data.datasets import first_readable_size
from d4m.errors import ConfigError
from d4m.evaluate.val import DEFAULT_SIZE
from d4m.methods.select import herding, kcenter_greedy, random_subset
from d4m.runio import StageTimer, atomic_save_png, atomic_write_text
from d4m.runio.rundir import RunDir, class_folder, image_name
from d4m.runio.verify import read_run  # noqa: F401 (read_run: moved)
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)
METHODS = ("random", "kcenter", "herding")
SELECT_KEYS = ("data", "ipc", "max_per_class", "codec", "size", "out_size", "seed", "extras")


def _square(img: Image.Image, size: int) -> Image.Image:
    return img if img.size == (size, size) else img.resize((size, size), Image.BICUBIC)


def _manifest(run: RunDir, rows: list[dict]) -> None:
    """Each row carries the sha256 that atomic_save_png returned: the hash of the bytes written."""
    atomic_write_text(run.manifest, "".join(json.dumps(r) + "\n" for r in rows))


def _features(method_cfg: dict, dataset, indices: list[int], cfg: DistillConfig, c: int, codec, teacher):
    """[n, d] features of one class's candidate images: codec latents or teacher penultimate features."""
    if method_cfg["features"] == "codec":
        from d4m.prototypes.encode import class_latents

        skipped: list[str] = []
        feats = torch.cat(list(class_latents(dataset, indices, codec, class_index=c, seed=cfg.seed, size=cfg.size,
                                             batch_size=cfg.encode_batch_size, workers=cfg.workers,
                                             strict=True, skipped=skipped)))
        return feats
    from d4m.methods.features import teacher_features

    size = teacher.input_size
    images = torch.stack([TF.to_dtype(TF.pil_to_tensor(_square(dataset.load(i), size)), torch.float32, scale=True)
                          for i in indices])
    return teacher_features(teacher, images)


def select_run(cfg: DistillConfig, method: str, features: str = "codec", teacher_spec: str | None = None,
               force: bool = False, device: str = "cpu") -> RunDir:
    """Write a run of ``cfg.ipc`` real images per class chosen by ``method`` into ``cfg.out``."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: expected one of {', '.join(METHODS)}, decode, noise-init")
    if features not in ("codec", "teacher"):
        raise ConfigError(f"--features {features!r}: expected codec or teacher")
    if method != "random" and features == "teacher" and not teacher_spec:
        raise ConfigError("--features teacher needs --teacher SPEC")
    from d4m.prototypes.stage import class_indices

    dataset = open_dataset(cfg.data, "train", strict=cfg.strict)
    if cfg.out_size is None:
        kind = DataSpec.parse(cfg.data).kind
        cfg.out_size = DEFAULT_SIZE.get(kind) or first_readable_size(dataset)
    cfg.generator = "none"
    cfg.extras = {"method": method, "features": None if method == "random" else features,
                  "teacher": teacher_spec if method != "random" and features == "teacher" else None}
    validate_select(cfg)
    run = RunDir(cfg.out)
    run.prepare(cfg, SELECT_KEYS, force, (run.images, run.manifest))
    if _complete(run):  # the manifest is written last, so a run with one and all its files is done
        log.info("%s: %s is complete (same configuration): nothing to do", method, run.path)
        return run
    codec = teacher = None
    if method != "random" and features == "codec":
        from d4m.codec import build_codec

        codec = build_codec(cfg.codec, cfg.model, device=device, posterior="mean")
    if method != "random" and features == "teacher":
        from d4m.models import load_teacher

        teacher = load_teacher(teacher_spec, classes=dataset.classes, data="the training data").to(device)
    per_class = class_indices(dataset, cfg)  # seeded order, at most --max-per-class candidates
    rows = []
    with StageTimer(run.log, f"select-{method}", unit="images", features=cfg.extras["features"]) as timer:
        for c in tqdm(range(len(per_class)), desc=f"select {method}", unit="class"):
            idx = per_class[c]
            k = min(cfg.ipc, len(idx))
            if method == "random":
                picks = random_subset(len(idx), k, cpu_generator(cfg.seed, "random", c))
            else:
                x = _features(cfg.extras, dataset, idx, cfg, c, codec, teacher)
                picks = kcenter_greedy(x, k) if method == "kcenter" else herding(x, k)
            folder = class_folder(c, dataset.classes[c], len(dataset.classes))
            for j, p in enumerate(picks):
                rel = f"images/{folder}/{image_name(j, cfg.ipc)}"
                digest = atomic_save_png(run.path / rel, _square(dataset.load(idx[p]), cfg.out_size))
                rows.append({"file": rel, "class_index": c, "class_name": dataset.classes[c], "method": method,
                             "features": cfg.extras["features"], "rank": j, "source": dataset.describe(idx[p]),
                             "source_index": idx[p], "seed": cfg.seed, "sha256": digest})
            timer.items += len(picks)
        _manifest(run, rows)
    log.info("%s: %d images in %s", method, len(rows), run.images)
    return run


def _complete(run: RunDir) -> bool:
    rows = run.rows()
    return bool(rows) and all((run.path / r["file"]).is_file() for r in rows)


def validate_select(cfg: DistillConfig) -> None:
    if not cfg.data:
        raise ConfigError("--data is required (e.g. --data folder:PATH)")
    if not cfg.out:
        raise ConfigError("--out is required (the run directory)")
    validate(cfg)


def stm_run(source: str | Path, teacher_spec: str, out: str | Path, iterations: int, lr: float, bn_weight: float,
            batch_size: int = 100, seed: int = 0, device: str = "cpu", force: bool = False,
            allow_incomplete: bool = False) -> RunDir:
    """Optimise every image of run ``source`` for ``iterations`` Adam steps; write the results as run ``out``."""
    from d4m.evaluate.run import open_images
    from d4m.methods.stm import recover
    from d4m.models import load_teacher

    src, src_cfg, src_rows = read_run(source, allow_incomplete)
    if iterations < 1 or lr <= 0 or batch_size < 1:
        raise ConfigError("--iterations and --batch-size must be >= 1 and --lr > 0")
    images = open_images(src.images)
    teacher = load_teacher(teacher_spec, classes=images.classes, data="the distilled images").to(device)
    dst = RunDir(out)
    if dst.path.resolve() == src.path.resolve():
        raise ConfigError(f"--out {out}: must differ from --run")
    cfg = merge(DistillConfig(), {k: v for k, v in src_cfg.items() if k in DistillConfig.__dataclass_fields__},
                str(src.config))
    cfg.out = str(dst.path)
    cfg.extras = {**cfg.extras, "method": "stm", "stm": {"source": str(src.path), "teacher": teacher_spec,
                  "iterations": iterations, "lr": lr, "bn_weight": bn_weight, "batch_size": batch_size,
                  "seed": seed}}
    dst.prepare(cfg, ("extras",), force, (dst.images, dst.manifest))
    by_file = {r["file"]: r for r in src_rows}
    files = [Path(images.describe(i)) for i in range(len(images))]
    # interleave classes so every batch mixes them, as BN statistics are taken over the batch
    order = sorted(range(len(files)), key=lambda i: (files[i].name, images.targets[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    rows = []
    with StageTimer(dst.log, "stm", unit="images", iterations=iterations, teacher=teacher_spec) as timer:
        bar = tqdm(total=len(batches) * iterations, desc="stm", unit="it")
        for b, batch in enumerate(batches):
            pil = [images.load(i) for i in batch]
            x = torch.stack([TF.to_dtype(TF.pil_to_tensor(p), torch.float32, scale=True) for p in pil])
            y = torch.tensor([images.targets[i] for i in batch])
            if teacher.columns is not None:
                y = torch.tensor(teacher.columns)[y]
            out_x, trace = recover(teacher.model, x, y, iterations, lr, bn_weight, teacher.input_size,
                                   seed=seed * 100003 + b, progress=lambda _i: bar.update(1))
            for i, img in zip(batch, out_x):
                rel = files[i].relative_to(src.path).as_posix()
                arr = (img.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype("uint8")
                digest = atomic_save_png(dst.path / rel, Image.fromarray(arr))
                rows.append({**by_file.get(rel, {"file": rel, "class_index": images.targets[i],
                                                 "class_name": images.classes[images.targets[i]]}),
                             "method": "stm", "stm_source": str(src.path / rel), "stm_batch": b,
                             "stm_ce": trace["ce"], "stm_bn": trace["bn"], "sha256": digest})
            timer.items += len(batch)
        bar.close()
        rows.sort(key=lambda r: r["file"])
        _manifest(dst, rows)
    return dst
