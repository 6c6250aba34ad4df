"""Baselines and ablations as functions: ``select`` (random, kcenter, herding; decode and noise-init) and ``stm``.

Each writes a run directory laid out like ``distill``'s, so ``evaluate``, ``report`` and ``export`` take it alike.
"""

from __future__ import annotations

from pathlib import Path

from d4m.api.stages import execute, given_settings
from d4m.api.run import Run, as_path
from d4m.errors import ConfigError
from d4m.settings import documented

# thin aliases of `distill`
ALIASES = {"decode": {"generator": "none"}, "noise-init": {"init": "noise", "generator": "model"}}
SELECT_SETTINGS = ("ipc", "codec", "model", "size", "out_size", "seed", "max_per_class", "workers", "strict")


@documented("select")
def select(method: str, data: str, *, out: str | Path, features: str = "codec", teacher: str | None = None,
           config: str | Path | None = None, device: str = "auto", force: bool = False, **settings) -> Run:
    """A baseline run of IPC images per class (``d4m select``): ``random`` (a seeded real subset), ``kcenter`` /
    ``herding`` (coresets on codec latents or teacher features), ``decode`` (prototypes decoded, no diffusion) or
    ``noise-init`` (pure noise, no prototypes: Table 4 "w/o PT").

    ``settings``: ``ipc``, ``codec``, ``model``, ``size``, ``out_size``, ``seed``, ``max_per_class``, ``workers``,
    ``strict`` (``config``, a YAML file, for decode / noise-init only).

    Example::

        base = d4m.select("random", "cifar10:~/data", ipc=10, out="runs/c10-random")
        kc = d4m.select("kcenter", "cifar10:~/data", ipc=10, codec="taef2:weights/taef2", size=64, out="runs/c10-kc")
    """
    from d4m.config import DistillConfig, merge, resolve

    unknown = sorted(set(settings) - set(SELECT_SETTINGS))
    if unknown:
        raise ConfigError(f"select: unknown setting {unknown[0]!r} (one of: {', '.join(SELECT_SETTINGS)})")
    given = given_settings("select", {**settings, "data": data, "out": str(out) if out is not None else None})
    if method in ALIASES:
        cfg = resolve({**given, **ALIASES[method]}, str(config) if config is not None else None)
        if not cfg.data or not cfg.out:
            raise ConfigError("--data and --out are required")
        return execute(cfg, Run(cfg.out), "distill", force)
    from d4m.methods.runs import select_run
    from d4m.parallel import resolve_device

    cfg = merge(DistillConfig(), given, "command line")
    return Run(select_run(cfg, method, features, teacher, force, resolve_device(device)).path)


@documented("stm")
def stm(run: str | Path | Run, teacher: str, out: str | Path, *, iterations: int | None = None,
        lr: float | None = None, bn_weight: float | None = None, batch_size: int = 100, seed: int = 0,
        device: str = "auto", force: bool = False, allow_incomplete: bool = False) -> Run:
    """Paper Table 3 (STM): optimise a run's images to match the teacher's BatchNorm statistics (``d4m stm``).

    ``allow_incomplete`` starts from a run whose images do not match its manifest (a warning per problem).

    Example::

        s = d4m.stm("runs/c10-ipc10", "cifar-resnet20:FILE", "runs/c10-stm", iterations=300)
    """
    from d4m.methods import stm as defaults
    from d4m.methods.runs import stm_run
    from d4m.parallel import resolve_device

    iterations = defaults.ITERATIONS if iterations is None else iterations
    lr = defaults.LR if lr is None else lr
    bn_weight = defaults.BN_WEIGHT if bn_weight is None else bn_weight
    dst = stm_run(as_path(run), teacher, out, iterations, lr, bn_weight, batch_size, seed, resolve_device(device),
                  force, allow_incomplete)
    return Run(dst.path)
