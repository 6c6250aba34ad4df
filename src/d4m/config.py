"""The distillation configuration: defaults < ``--preset`` < ``--config`` YAML < command-line flags.

Every key is a field of ``DistillConfig``; a YAML file or preset with an unknown key or a wrong type is refused with
an error naming the key. ``config.yaml`` in a run directory holds the resolved configuration, every default
written out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from d4m.errors import ConfigError, D4MError
from d4m.runio.textfiles import read_text

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_NEGATIVE = "cartoon, anime, painting"


@dataclass
class DistillConfig:
    # what to distil
    data: str | None = None
    ipc: int = 10
    max_per_class: int | None = None
    allow_short: bool = False
    strict: bool = False
    # models
    model: str = DEFAULT_MODEL
    codec: str = "model"
    generator: str = "model"  # "model": img2img with the model's UNet; "none": decode the prototypes directly
    scheduler: str | None = None  # None: the model's own scheduler config
    posterior: str = "sample"  # VAE posterior: "sample" (paper) or "mean"
    # stage 1: prototypes
    size: int = 512  # images are squashed to size x size before encoding (paper: 512)
    kmeans: str = "online"  # "online" (paper, one pass) or "full" (k-means++ + Lloyd to convergence)
    km_expand: int = 10  # online mini-batch = km_expand * ipc latents
    km_reassign: float | None = None  # online: sklearn's reassignment ratio of nearly empty centres (None: off)
    kmeans_iters: int = 50
    kmeans_tol: float = 1e-4
    prototype_dtype: str = "float32"
    # stage 2: synthesis
    init: str = "prototypes"  # "prototypes" (D4M) or "noise" (pure noise, full schedule: the w/o-prototype ablation)
    strength: float = 0.7
    guidance: float = 8.0
    steps: int = 50
    prompt_template: str = "{}"
    negative_prompt: str = DEFAULT_NEGATIVE
    out_size: int | None = None  # None: the dataset's resolution (CIFAR 32, Tiny-ImageNet 64, ImageNet 224)
    # guided synthesis, beyond the paper (d4m.synthesis.guidance)
    mode_guidance: float = 0.0  # pull the predicted clean latent this fraction toward the prototype (0: off)
    mode_stop: float = 0.5  # ... for this first fraction of the denoising steps
    candidates: int = 1  # draws per image; > 1 keeps the one the candidate teacher scores best
    candidate_teacher: str | None = None  # teacher spec that scores candidates (needed when candidates > 1)
    diversity: float = 0.0  # candidate score = teacher probability + diversity x distance to the kept images
    # reproducibility and execution
    seed: int = 0
    dtype: str = "auto"  # "auto": float16 on CUDA, float32 on CPU
    device: str = "auto"
    batch_size: int = 8
    compile: bool = False  # torch.compile the UNet (worth it for long GPU runs; never changes what is computed)
    encode_batch_size: int = 32
    workers: int = 2
    preset: str | None = None
    out: str | None = None
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys that change what a stage writes; a run directory made with other values is refused without --force.
PROTOTYPE_KEYS = ("data", "ipc", "max_per_class", "allow_short", "strict", "codec", "posterior", "size", "kmeans",
                  "km_expand", "km_reassign", "kmeans_iters", "kmeans_tol", "prototype_dtype", "seed")
SYNTHESIS_KEYS = ("model", "generator", "init", "scheduler", "strength", "guidance", "steps", "prompt_template",
                  "negative_prompt", "out_size", "dtype", "mode_guidance", "mode_stop", "candidates",
                  "candidate_teacher", "diversity")
CHOICES = {"kmeans": ("online", "full"), "init": ("prototypes", "noise"), "posterior": ("sample", "mean"), "generator": ("model", "none"),
           "prototype_dtype": ("float32", "float16"), "dtype": ("auto", "float32", "float16", "bfloat16")}


MAX_SIDE = 16384  # an image side beyond this is a typo, not a resolution (one such image is 1 GiB of RGB)


def preset_names() -> list[str]:
    folder = resources.files("d4m").joinpath("presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    if name not in preset_names():
        raise ConfigError(f"--preset {name!r}: unknown preset (one of: {', '.join(preset_names())})")
    text = resources.files("d4m").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")
    return _check_mapping(yaml.safe_load(text) or {}, f"preset {name}")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        text = read_text(path, "--config file")
    except D4MError as exc:
        raise ConfigError(str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return _check_mapping(data or {}, str(path))


def _check_mapping(data: Any, where: str) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values")
    return data


def _coerce(key: str, value: Any, where: str) -> Any:
    hint = get_type_hints(DistillConfig)[key]
    allowed = getattr(hint, "__args__", (hint,))
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is type(None):
            continue
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (str, bool, dict) and isinstance(value, t):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(f"{where}: key {key!r} must be {names}, got {type(value).__name__} {value!r}")


def merge(config: DistillConfig, updates: dict, where: str) -> DistillConfig:
    """Return ``config`` with ``updates`` applied; unknown keys and wrong types are errors naming the key."""
    known = {f.name for f in dataclasses.fields(DistillConfig)}
    values = config.to_dict()
    for key, value in updates.items():
        key = str(key).replace("-", "_")
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}")
        values[key] = _coerce(key, value, where)
    return DistillConfig(**values)


def resolve(cli: dict, config_file: str | None = None, preset: str | None = None) -> DistillConfig:
    """defaults < preset < config file < flags given on the command line (``cli`` holds only given flags)."""
    cfg = DistillConfig()
    file_values = load_yaml(config_file) if config_file else {}
    preset = cli.get("preset") or file_values.get("preset") or preset
    if preset:
        cfg = merge(cfg, load_preset(preset), f"preset {preset}")
        cfg.preset = preset
    cfg = merge(cfg, file_values, str(config_file))
    cfg = merge(cfg, {k: v for k, v in cli.items() if v is not None}, "command line")
    validate(cfg)
    return cfg


def validate(cfg: DistillConfig) -> None:
    """Range checks, each naming the flag."""
    if not cfg.ipc or cfg.ipc <= 0:
        raise ConfigError(f"--ipc {cfg.ipc}: must be a positive integer")
    for key in ("strength", "guidance", "kmeans_tol"):
        if not math.isfinite(getattr(cfg, key)):
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)}: must be a finite number")
    if not 0.0 < cfg.strength <= 1.0:
        raise ConfigError(f"--strength {cfg.strength}: must be in (0, 1]")
    if cfg.guidance < 0:
        raise ConfigError(f"--guidance {cfg.guidance}: must be >= 0")
    if cfg.kmeans_tol < 0:
        raise ConfigError(f"--kmeans-tol {cfg.kmeans_tol}: must be >= 0")
    if cfg.steps <= 0:
        raise ConfigError(f"--steps {cfg.steps}: must be a positive integer")
    if cfg.size <= 0 or cfg.size % 8:
        raise ConfigError(f"--size {cfg.size}: must be a positive multiple of 8")
    if cfg.out_size is not None and cfg.out_size <= 0:
        raise ConfigError(f"--out-size {cfg.out_size}: must be positive")
    for key in ("size", "out_size"):
        if (getattr(cfg, key) or 0) > MAX_SIDE:
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)}: larger than {MAX_SIDE} pixels")
    if cfg.km_expand <= 0:
        raise ConfigError(f"--km-expand {cfg.km_expand}: must be a positive integer")
    if cfg.km_reassign is not None and not 0.0 < cfg.km_reassign <= 1.0:
        raise ConfigError(f"--km-reassign {cfg.km_reassign}: a ratio in (0, 1] (scikit-learn's default 0.01)")
    if cfg.max_per_class is not None and cfg.max_per_class <= 0:
        raise ConfigError(f"--max-per-class {cfg.max_per_class}: must be positive")
    if cfg.max_per_class is not None and cfg.max_per_class < cfg.ipc and not cfg.allow_short:
        raise ConfigError(f"--max-per-class {cfg.max_per_class} is below --ipc {cfg.ipc}: every class would have "
                          "fewer images than prototypes; raise it, or add --allow-short to reuse prototypes")
    if cfg.steps > 10_000:
        raise ConfigError(f"--steps {cfg.steps}: more than any diffusion scheduler is trained with")
    for n in ("batch_size", "encode_batch_size", "kmeans_iters"):
        if getattr(cfg, n) <= 0:
            raise ConfigError(f"--{n.replace('_', '-')} {getattr(cfg, n)}: must be a positive integer")
    if cfg.workers < 0:
        raise ConfigError(f"--workers {cfg.workers}: must be >= 0")
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)!r}: expected one of {', '.join(allowed)}")
    if "{}" not in cfg.prompt_template:
        raise ConfigError(f"--prompt-template {cfg.prompt_template!r}: must contain '{{}}' for the class text")
    validate_guided(cfg)
    if cfg.init == "noise" and cfg.generator == "none":
        raise ConfigError("--init noise: needs --generator model (with --generator none nothing is denoised, so the "
                          "images would be the decoded prototypes)")


def validate_guided(cfg: DistillConfig) -> None:
    """Range checks of the guided-synthesis settings."""
    for key in ("mode_guidance", "mode_stop", "diversity"):
        if not math.isfinite(getattr(cfg, key)):
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)}: must be a finite number")
    if not 0.0 <= cfg.mode_guidance <= 1.0:
        raise ConfigError(f"--mode-guidance {cfg.mode_guidance}: a fraction in [0, 1] (0: off)")
    if not 0.0 < cfg.mode_stop <= 1.0:
        raise ConfigError(f"--mode-stop {cfg.mode_stop}: a fraction of the denoising steps in (0, 1]")
    if not 1 <= cfg.candidates <= 64:
        raise ConfigError(f"--candidates {cfg.candidates}: draws per image, 1 to 64")
    if cfg.diversity < 0:
        raise ConfigError(f"--diversity {cfg.diversity}: must be >= 0")
    if cfg.candidates > 1 and not cfg.candidate_teacher:
        raise ConfigError(f"--candidates {cfg.candidates}: needs --candidate-teacher SPEC to score the draws")
    if cfg.generator == "none" and (cfg.candidates > 1 or cfg.mode_guidance > 0):
        raise ConfigError("--candidates / --mode-guidance: need --generator model (decoding prototypes draws nothing)")


# settings only the denoiser reads (and the model, when the codec is not the model's own VAE)
DENOISER_ONLY = ("init", "scheduler", "strength", "guidance", "steps", "prompt_template", "negative_prompt",
                 "compile", "mode_guidance", "mode_stop", "candidates", "candidate_teacher", "diversity")
SELECT_METHODS = ("random", "kcenter", "herding")
# what every select run uses; kcenter / herding on codec latents add the codec's settings
SELECT_RECORD = ("data", "ipc", "max_per_class", "out_size", "seed", "out", "extras")
CODEC_RECORD = ("codec", "size", "encode_batch_size", "workers")


def recorded(cfg: DistillConfig) -> dict:
    """The settings this run used, as ``config.yaml`` records them: nothing it did not use.

    A decode run (``generator: none``) drops the denoiser's settings (and the model unless the codec is its VAE);
    a random selection keeps no codec or encode size; kcenter / herding on teacher features neither. The VAE
    posterior is recorded only for VAE codecs (``model`` or ``vae:``), never for TAEF2. The prototypes stage
    records the synthesis settings too: they are the plan ``d4m synthesize`` continues from.
    """
    values = cfg.to_dict()
    extras = values.get("extras") or {}
    method = extras.get("method")
    if method in SELECT_METHODS:
        keep = set(SELECT_RECORD)
        if method != "random" and extras.get("features") == "codec":
            keep |= set(CODEC_RECORD) | ({"model"} if cfg.codec == "model" else set())
            keep |= {"posterior"} if not cfg.codec.startswith("taef2:") else set()
        return {k: v for k, v in values.items() if k in keep}
    drop = set()
    if cfg.generator == "none":
        drop |= set(DENOISER_ONLY) | ({"model"} if cfg.codec != "model" else set())
    if cfg.codec.startswith("taef2:"):
        drop.add("posterior")
    if cfg.mode_guidance <= 0:
        drop.add("mode_stop")
    if cfg.candidates <= 1:
        drop |= {"candidate_teacher", "diversity"}
    return {k: v for k, v in values.items() if k not in drop}


def dump(cfg: DistillConfig) -> str:
    return yaml.safe_dump(recorded(cfg), sort_keys=False, allow_unicode=True)


def differing(old: dict, new: DistillConfig, keys: tuple[str, ...]) -> list[str]:
    """The ``keys`` recorded by both the old run and the new one whose values differ. A setting one of them did
    not use (absent from its record) cannot conflict: what decides whether it is used (generator, codec, method)
    is itself recorded and compared."""
    values = recorded(new)
    return [k for k in keys if k in old and k in values and old[k] != values[k]]
