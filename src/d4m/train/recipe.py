"""Student recipes as YAML data: ``paper``, ``locked`` and ``ddranking`` ship with d4m; ``--recipe my.yaml`` reads a
user's file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import yaml

from d4m.errors import ConfigError, D4MError
from d4m.labels.stream import StreamSpec
from d4m.runio.textfiles import read_text

BUILTIN = ("paper", "locked", "converged", "ddranking")
MAX_EPOCHS = 100_000  # the paper's recipe is 300; more is a typo (an epoch count in steps, an extra zero or three)


@dataclass(frozen=True)
class Recipe:
    name: str = "custom"
    epochs: int = 300
    batch_size: int = 1024  # effective batch, capped at the number of images
    optimizer: str = "adamw"  # adamw, adam or sgd
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine (per epoch, to 0), half-cosine (DD-Ranking's: to lr / 2) or constant
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    mix: str = "cutmix"  # cutmix, mixup or none
    mix_alpha: float = 1.0
    temperature: float = 20.0
    hard_label_weight: float = 0.0
    stream_seed: int = 0

    def stream(self, num_images: int, image_size: int) -> StreamSpec:
        return StreamSpec(seed=self.stream_seed, batch_size=min(self.batch_size, num_images), image_size=image_size,
                          scale=tuple(self.scale), ratio=tuple(self.ratio), flip=self.flip, mix=self.mix,
                          mix_alpha=self.mix_alpha)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"], d["ratio"] = list(self.scale), list(self.ratio)
        return d


_CHOICES = {"optimizer": ("adamw", "adam", "sgd"), "schedule": ("cosine", "half-cosine", "constant"),
            "mix": ("cutmix", "mixup", "none")}


def recipe_from_dict(data: dict, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe must be a YAML mapping of keys to values")
    known = {f.name: f for f in fields(Recipe)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{source}: unknown recipe key {key!r} (known: {', '.join(known)})")
    values = {}
    for key, value in data.items():
        default = known[key].default
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError
            elif isinstance(default, tuple):
                value = tuple(float(v) for v in value)
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError
            elif isinstance(default, int):  # 2.5 epochs or `true` is a mistake, not 2 or 1
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif isinstance(default, float):
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
            elif isinstance(default, str) and not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{source}: recipe key {key!r} has an invalid value {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or (isinstance(value, tuple) and not all(
                math.isfinite(v) for v in value)):
            raise ConfigError(f"{source}: recipe key {key!r} must be finite, not {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"{source}: recipe key {key!r} must not be negative, not {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{source}: recipe key {key!r} must be one of {', '.join(_CHOICES[key])}, not {value!r}")
        values[key] = value
    recipe = Recipe(**values)
    for key in ("epochs", "batch_size"):
        if getattr(recipe, key) < 1:
            raise ConfigError(f"{source}: recipe key {key!r} must be >= 1")
    if recipe.temperature <= 0 or recipe.lr <= 0:
        raise ConfigError(f"{source}: recipe keys 'temperature' and 'lr' must be > 0")
    if recipe.epochs > MAX_EPOCHS:
        raise ConfigError(f"{source}: recipe key 'epochs' is {recipe.epochs}, more than d4m runs ({MAX_EPOCHS})")
    if not 0 < recipe.scale[0] <= recipe.scale[1] <= 1:
        raise ConfigError(f"{source}: recipe key 'scale' must be two area fractions in (0, 1], not {recipe.scale}")
    if not 0 < recipe.ratio[0]:
        raise ConfigError(f"{source}: recipe key 'ratio' must be two aspect ratios > 0, not {recipe.ratio}")
    if recipe.mix != "none" and recipe.mix_alpha <= 0:
        raise ConfigError(f"{source}: recipe key 'mix_alpha' must be > 0 with mix {recipe.mix!r}")
    return recipe


def load_recipe(name_or_path: str, epochs: int | None = None) -> Recipe:
    """A built-in recipe by name or a YAML file by path; ``epochs`` (--epochs) overrides the file."""
    if name_or_path in BUILTIN:
        text, source = resources.files("d4m").joinpath("recipes", f"{name_or_path}.yaml").read_text(), name_or_path
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"--recipe {name_or_path!r}: neither a built-in ({', '.join(BUILTIN)}) nor a file")
        try:
            text, source = read_text(path, "--recipe file"), str(path)
        except D4MError as exc:
            raise ConfigError(str(exc)) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--recipe {source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--recipe {source}: a recipe must be a YAML mapping of keys to values")
    data.setdefault("name", Path(source).stem if source not in BUILTIN else source)
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= MAX_EPOCHS:
            raise ConfigError(f"--epochs {epochs!r}: must be an integer in [1, {MAX_EPOCHS}]")
        data["epochs"] = epochs
    return recipe_from_dict(data, f"--recipe {source}")
