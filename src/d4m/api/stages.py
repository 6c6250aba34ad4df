"""Distillation as functions: ``distill`` (both stages), ``find_prototypes`` (stage 1), ``synthesize`` (stage 2),
``sweep``.

Every setting is a ``d4m.config.DistillConfig`` field, spelled like the command-line flag with ``_``
(``km_expand=5`` is ``--km-expand 5``). Precedence as on the command line: defaults < ``preset`` < ``config`` YAML
< keyword arguments.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from d4m.api.run import Run
from d4m.config import PROTOTYPE_KEYS, SYNTHESIS_KEYS, DistillConfig, merge, resolve, validate
from d4m.errors import ConfigError
from d4m.settings import documented

log = logging.getLogger(__name__)

SETTINGS = frozenset(DistillConfig.__dataclass_fields__) - {"extras"}
DATASET_RESOLUTION = {"cifar10": 32, "cifar100": 32, "tiny-imagenet": 64, "imagenet": 224}
# settings that only the denoiser reads: asking for them on a run that decodes its prototypes is a mistake
DENOISING = ("strength", "guidance", "steps", "scheduler", "negative_prompt")


def given_settings(where: str, settings: dict) -> dict:
    """The given settings (None means 'not given'); an unknown name is a one-line error."""
    given = {}
    for key, value in settings.items():
        name = str(key).replace("-", "_")
        if name not in SETTINGS:
            raise ConfigError(f"{where}: unknown setting {key!r} (the settings are the flags of `d4m {where}`, "
                              "spelled with '_')")
        if value is not None:
            given[name] = value
    return given


@documented("distill")
def distill(data: str | None = None, *, out: str | Path | None = None, config: str | Path | None = None,
            preset: str | None = None, force: bool = False, **settings) -> Run:
    """Prototypes then synthesis: a dataset -> a run directory of distilled images (``d4m distill``).

    Example::

        run = d4m.distill("folder:/data/train", ipc=10, out="runs/x",
                          model="stable-diffusion-v1-5/stable-diffusion-v1-5")
        run = d4m.distill(preset="cifar10-ipc10", data="cifar10:~/data", out="runs/c10-ipc10")
        run = d4m.distill(preset="cifar10-ipc10-cpu", data="cifar10:~/data", out="runs/c10-cpu")  # CPU, no hub
        run.images, run.manifest()

    A rerun with the same settings resumes; a run directory made with other settings is refused unless
    ``force=True``.
    """
    return _first_stage("distill", data, out, config, preset, force, settings)


@documented("prototypes")
def find_prototypes(data: str | None = None, *, out: str | Path | None = None, config: str | Path | None = None,
                    preset: str | None = None, force: bool = False, **settings) -> Run:
    """Stage 1 alone: encode the dataset, k-means each class into IPC prototypes (``d4m prototypes``).

    Example::

        run = d4m.find_prototypes("imagenet:/data/imagenet", preset="imagenet-ipc10", out="runs/in1k-ipc10")
        run.prototypes()["prototypes"].shape    # [1000, 10, 4, 64, 64]
    """
    return _first_stage("prototypes", data, out, config, preset, force, settings)


def _first_stage(stage, data, out, config, preset, force, settings) -> Run:
    given = given_settings(stage, {**settings, "data": data, "out": str(out) if out is not None else None,
                                   "preset": preset})
    cfg = resolve(given, str(config) if config is not None else None)
    if not cfg.data:
        raise ConfigError("--data is required (e.g. --data cifar10:~/data or --data folder:PATH)")
    if not cfg.out:
        raise ConfigError("--out is required (the run directory)")
    return execute(cfg, Run(cfg.out), stage, force)


@documented("synthesize")
def synthesize(run: str | Path | Run, *, out: str | Path | None = None, force: bool = False, **settings) -> Run:
    """Stage 2 alone: denoise a run's prototypes into images (``d4m synthesize``); returns the run written.

    The run's ``config.yaml`` gives every setting not passed here. With ``out`` (a new directory) the prototypes
    are copied there, so one k-means feeds several syntheses.

    Example::

        run = d4m.find_prototypes("folder:/data/train", ipc=10, out="runs/p")
        s5 = d4m.synthesize(run, strength=0.5, out="runs/p-s0.5")
    """
    src = Run(run)
    given = given_settings("synthesize", {**settings, "out": str(out) if out is not None else None})
    old = src.dir.read_config()
    if old is None:
        raise ConfigError(f"--run {src.path}: no config.yaml there (run `d4m prototypes` first)")
    cfg = merge(DistillConfig(), {k: v for k, v in old.items() if k != "out"}, str(src.dir.config))
    cfg = merge(cfg, given, "command line")
    flags = list(DENOISING) + (["model"] if cfg.codec != "model" else [])  # with the model's VAE as the codec,
    denoising = [k for k in flags if k in given]                           # a new model may just be a relocation
    if cfg.generator == "none" and "generator" not in given and denoising:
        raise ConfigError(f"--{denoising[0].replace('_', '-')} given, but --run {src.path} decodes its prototypes "
                          "(generator: none in its config.yaml); add --generator model to denoise them")
    source, dst = None, src
    if out is not None and Path(out).expanduser().resolve() != src.path.resolve():
        if not src.dir.prototypes.is_file():
            raise ConfigError(f"--run {src.path}: no prototypes.safetensors there (run `d4m prototypes` first)")
        source, dst = src.dir.prototypes, Run(out)
    cfg.out = str(dst.path)
    validate(cfg)
    return execute(cfg, dst, "synthesize", force, prototypes_from=source)


@documented("sweep")
def sweep(run: str | Path | Run, strengths: list[float] | str, *, batch_size: int | None = None,
          force: bool = False) -> list[Run]:
    """One synthesis per strength in ``RUN/sweep/strength-S/``, each reusing the run's prototypes (``d4m sweep``).

    Example::

        runs = d4m.sweep("runs/c10-ipc10", [0.3, 0.5, 0.7, 0.9])
        [r.config["strength"] for r in runs]
    """
    src = Run(run)
    old = src.dir.read_config()
    if old is None or not src.dir.prototypes.is_file():
        raise ConfigError(f"--run {src.path}: needs config.yaml and prototypes.safetensors (run `d4m prototypes`)")
    if old.get("generator") == "none":
        raise ConfigError(f"--strength given, but --run {src.path} decodes its prototypes (generator: none in its "
                          "config.yaml): nothing to sweep; synthesize it with --generator model first")
    done = []
    for s in parse_strengths(strengths):
        dst = Run(src.path / "sweep" / f"strength-{s:g}")
        cfg = merge(DistillConfig(), {k: v for k, v in old.items() if k != "out"}, str(src.dir.config))
        cfg.strength, cfg.out = s, str(dst.path)
        if batch_size:
            cfg.batch_size = batch_size
        validate(cfg)
        dst.dir.claim()
        if not dst.dir.prototypes.is_file():
            try:
                os.link(src.dir.prototypes, dst.dir.prototypes)
            except OSError:
                shutil.copy2(src.dir.prototypes, dst.dir.prototypes)
        log.info("sweep: strength %g -> %s", s, dst.path)
        done.append(execute(cfg, dst, "synthesize", force))
    return done


def parse_strengths(values: list[float] | str) -> list[float]:
    """[0.5, 0.7] from '0.5,0.7' or a list; a one-line error naming --strength otherwise."""
    text = values if isinstance(values, str) else ",".join(str(v) for v in values)
    try:
        out = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--strength {text!r}: expected a comma-separated list of numbers, e.g. 0.5,0.7") from None
    if not out or any(not 0.0 < v <= 1.0 for v in out):
        raise ConfigError(f"--strength {text!r}: every value must be in (0, 1]")
    return out


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


RESCORE_KEYS = {"diversity", "candidate_teacher"}  # they only change which candidate is kept


def expected_time(cfg: DistillConfig, stage: str, per_class: list[list[int]], codec, gen, device, dtype) -> str:
    """The line ``distill`` / ``prototypes`` print before the work: image counts times rates timed here."""
    from d4m.estimate import expected_line, seconds_per_image

    counts = {"prototypes": sum(len(i) for i in per_class)}
    if stage == "distill":
        counts["synthesis"] = len(per_class) * cfg.ipc
    return expected_line(counts, seconds_per_image(cfg, codec, gen, device, dtype, tuple(counts)))


def execute(cfg: DistillConfig, run: Run, stage: str, force: bool = False, prototypes_from: Path | None = None) -> Run:
    """Run ``stage`` (distill, prototypes or synthesize) of a resolved configuration into ``run``.

    Every check that can run before the work runs first, before an image is decoded or a file written: flags
    (validated with the config), device, output folder, the dataset listing, the models and their fit.
    """
    from d4m.data import DataSpec, open_dataset
    from d4m.data.datasets import first_readable_size
    from d4m.parallel import resolve_device, topology
    from d4m.errors import DataError
    from d4m.prototypes.stage import _part_path as part_path
    from d4m.prototypes.stage import changed_sources, class_indices, load_prototypes, run_prototypes
    from d4m.runio.atomic import atomic_write_bytes
    from d4m.runio.stagelog import StageTimer
    from d4m.synthesis.builds import apply_build, choose_build
    from d4m.synthesis.generator import load_models
    from d4m.synthesis.stage import run_synthesis

    rd = run.dir
    topo = topology(cfg.device)
    device = resolve_device(cfg.device, topo)
    dtype = resolve_dtype(cfg.dtype, device)
    if stage in ("prototypes", "distill"):
        keys = PROTOTYPE_KEYS + (SYNTHESIS_KEYS if stage == "distill" else ())
        outputs = (rd.prototypes, rd.parts) + rd.synthesis_outputs  # new prototypes invalidate old images
    else:  # synthesis settings may change freely until the first image exists
        keys = (SYNTHESIS_KEYS + ("ipc",)) if rd.images.is_dir() and any(rd.images.iterdir()) else ()
        outputs = rd.synthesis_outputs
    if prototypes_from is not None:  # a new run dir fed by another run's prototypes: all settings are its own
        keys = PROTOTYPE_KEYS + SYNTHESIS_KEYS + ("ipc",)
    changed = rd.check(cfg, tuple(k for k in keys if k != "out_size" or cfg.out_size is not None), force)
    if changed and set(changed) <= RESCORE_KEYS:  # the same draws, another choice: keep candidates/ and the journal
        outputs = tuple(p for p in outputs if p not in (rd.path / "candidates", rd.journal))
    dataset, stale = None, []
    if stage in ("prototypes", "distill"):
        dataset = open_dataset(cfg.data, "train", strict=cfg.strict)  # lists the files; no image is read yet
        per_class = class_indices(dataset, cfg)  # fail on short classes before anything is loaded or written
        stale = changed_sources(rd, dataset, per_class) if rd.path.is_dir() else []
        if stale and not force:  # finished classes are reused only when made from the images listed now
            c = stale[0]
            raise DataError(f"--data {cfg.data}: the images of {len(stale)} class(es) changed since {rd.path}'s "
                            f"prototypes were made (first: class {c} {dataset.classes[c]!r}); --force redoes "
                            "them (and the images made from them), or use a new --out")
    codec, gen = load_models(cfg, stage, device, dtype)
    if dataset is not None and topo.is_main:
        log.info(expected_time(cfg, stage, per_class, codec, gen, device, dtype))
    if dataset is not None and cfg.out_size is None:
        cfg.out_size = DATASET_RESOLUTION.get(DataSpec.parse(cfg.data).kind) or first_readable_size(dataset)
    if topo.is_main:
        rd.prepare(cfg, keys, force, outputs)
        if dataset is not None and stale:  # --force: the changed classes' prototypes, and all they fed, go
            for c in stale:
                part_path(rd, c).unlink(missing_ok=True)
            for p in (rd.prototypes,) + rd.synthesis_outputs:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
        if prototypes_from is not None:
            atomic_write_bytes(rd.prototypes, prototypes_from.read_bytes())
    topo.barrier()
    if stage in ("prototypes", "distill"):
        from d4m.prototypes.cache import EncodedLatents

        encoded = EncodedLatents.find(cfg.model, dataset, codec, cfg.size)  # a d4m generator's, when they fit
        with StageTimer(rd.log, "prototypes", unit="images", device=device, world=topo.world) as t:
            run_prototypes(cfg, rd, dataset, codec, topo, timer=t, encoded=encoded)
        if topo.is_main:
            log.info("prototypes: %.1f s, %s images/s", t.record["wall_s"], t.record["images_per_s"])
    if stage in ("synthesize", "distill"):
        tensors, meta = load_prototypes(rd.prototypes)
        if gen is not None:  # eager unless --compile, or a GPU default that a GPU run's rule admitted
            gen.unet = apply_build(gen.unet, choose_build(cfg.compile, device))
        with StageTimer(rd.log, "synthesis", unit="images", device=device, world=topo.world) as t:
            run_synthesis(cfg, rd, tensors["prototypes"].float(), meta["label_texts"], meta["classes"], codec,
                          gen, topo, device, dtype, timer=t, skipped=meta.get("skipped"))
        if topo.is_main and t.items:
            log.info("synthesis: %.1f s, %s images/s; images in %s", t.record["wall_s"],
                     t.record["images_per_s"], rd.images)
        elif topo.is_main:  # every image was there already (a rerun, a rescore): no rate to report
            log.info("synthesis: %.1f s, no image synthesized (all present); images in %s", t.record["wall_s"],
                     rd.images)
    return run

