"""Training and sampling a small text-conditioned latent diffusion model (``d4m generator train / sample``)."""

from __future__ import annotations

from pathlib import Path

from d4m.errors import ConfigError
from d4m.settings import documented


def _threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise ConfigError(f"--threads {n}: must be at least 1")
        import torch

        torch.set_num_threads(n)


@documented("generator train")
def train_generator(data: str, codec: str, out: str | Path, *, resume: bool = False, threads: int | None = None,
                    **settings) -> Path:
    """Train a generator on a dataset's codec latents; saved in diffusers' layout, usable as ``distill(model=out)``.

    ``settings`` are the flags of ``d4m generator train`` spelled with ``_`` (listed below). ``out`` receives only
    what sampling needs; the checkpoint and latent cache go to ``OUT.work/`` beside it (``resume=True`` continues
    from there). ``max_minutes`` stops at a step boundary with a checkpoint and an export.

    Example::

        model = d4m.train_generator("folder:data/train", "taef2:weights/taef2", "generators/c10", size=64,
                                    text_encoder="minilm", preset="small", epochs=50)
        run = d4m.distill("folder:data/train", model=str(model), codec="taef2:weights/taef2", size=64, out="runs/g")
    """
    from d4m.generator.train import TrainConfig, run_train

    fields = TrainConfig.__dataclass_fields__
    unknown = sorted(k for k in settings if k not in fields)
    if unknown:
        raise ConfigError(f"generator train: unknown setting {unknown[0]!r}")
    import typing

    from d4m.api.typecheck import check_value

    hints = typing.get_type_hints(TrainConfig)
    for key, value in settings.items():
        if value is not None:
            check_value("d4m.train_generator", key, value, hints[key])
    _threads(threads)
    cfg = TrainConfig(data=data, codec=codec, out=str(out), **{k: v for k, v in settings.items() if v is not None})
    run_train(cfg, resume=resume)
    return Path(out).expanduser()


@documented("generator sample")
def sample_generator(model: str | Path, out: str | Path, *, per_class: int, codec: str | None = None, steps: int = 50,
                     guidance: float = 8.0, seed: int = 0, batch_size: int = 50, device: str = "auto",
                     threads: int | None = None, grid: str | Path | None = None,
                     scheduler: str | None = None) -> list[Path]:
    """Class-conditional images from pure noise into an ImageFolder (``d4m generator sample``); returns the files.

    Example::

        files = d4m.sample_generator("generators/c10", "samples/c10", per_class=100)
    """
    from d4m.generator.sample import sample_to_folder

    _threads(threads)
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    return sample_to_folder(str(model), codec, per_class, Path(out), steps=steps, guidance=guidance, seed=seed,
                            batch_size=batch_size, device=device, grid=Path(grid) if grid else None,
                            scheduler=scheduler)
