"""Load a text-conditioned latent diffusion model's parts with ``from_pretrained`` (hub id or local directory).

The parts are the diffusers UNet2DConditionModel, the transformers text encoder and tokenizer, and the model's
own scheduler (or one named by ``--scheduler``). No pipeline object and no safety checker are built: the safety
checker blacks out images it flags, which would silently remove distilled images.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from d4m.errors import ModelError
from d4m.generators import resolve_model
from d4m.pretrained import check_folder, load_component
from d4m.runio.textfiles import read_json

log = logging.getLogger(__name__)

COMPONENTS = ("unet", "text_encoder", "tokenizer", "scheduler")
TEXT_PARTS = ("text_encoder", "tokenizer")
SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "ddpm": "DDPMScheduler",
              "euler": "EulerDiscreteScheduler", "dpm": "DPMSolverMultistepScheduler", "lms": "LMSDiscreteScheduler"}


@dataclass(frozen=True)
class LatentNorm:
    """How codec latents map into the UNet's space: ``(z - mean) / std`` per channel, and back.

    A d4m-trained generator stores per-channel ``latent_mean`` / ``latent_std`` in its d4m.json; older ones stored
    one global ``latent_scale`` (mean 0, std 1 / scale); any other model (Stable Diffusion: the VAE codec already
    applies 0.18215) is the identity."""

    mean: torch.Tensor  # [C]
    std: torch.Tensor  # [C]

    @classmethod
    def from_info(cls, info: dict, channels: int) -> "LatentNorm":
        if "latent_mean" in info and "latent_std" in info:
            mean, std = torch.tensor(info["latent_mean"]), torch.tensor(info["latent_std"])
            if mean.shape != (channels,) or std.shape != (channels,):
                raise ModelError(f"d4m.json: latent_mean/latent_std have {mean.numel()} channels, the UNet "
                                 f"{channels}")
            return cls(mean.float(), std.float())
        scale = float(info.get("latent_scale", 1.0))
        return cls(torch.zeros(channels), torch.full((channels,), 1.0 / scale))

    def _view(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v.to(x.device, torch.float32).view(1, -1, *([1] * (x.dim() - 2)))

    def to_model(self, z: torch.Tensor) -> torch.Tensor:
        return ((z.float() - self._view(z, self.mean)) / self._view(z, self.std)).to(z.dtype)

    def from_model(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self._view(x, self.std) + self._view(x, self.mean)).to(x.dtype)


@dataclass
class Generator:
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    source: str
    info: dict  # the model's d4m.json (a generator trained by d4m), or {}

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def norm(self) -> LatentNorm:
        return LatentNorm.from_info(self.info, self.latent_channels)


def check_model_dir(model: str) -> None:
    """A local folder must hold every component; name the first missing one."""
    model = resolve_model(model)
    path = Path(model).expanduser()
    if not path.exists():
        if model.startswith((".", "/", "~")) or model.count("/") != 1:
            raise ModelError(f"--model {model}: no such directory (and not a hub id of the form owner/name)")
        return  # a hub id: from_pretrained downloads it
    if not path.is_dir():
        raise ModelError(f"--model {model}: not a directory")
    if not any((path / c).is_dir() for c in COMPONENTS):
        raise ModelError(f"--model {model}: not a diffusers model folder (no unet/, text_encoder/, tokenizer/, "
                         "scheduler/ sub-folders)")
    present = tuple(c for c in COMPONENTS if (path / c).is_dir())
    for c in COMPONENTS:
        if c not in present and not (c in TEXT_PARTS and encoder_by_name(model)):
            raise ModelError(f"--model {model}: missing component {c}/")
    for c in present + (("vae",) if (path / "vae").is_dir() else ()):  # custom code, pickles: before any load
        check_folder(path / c, f"{model}/{c}", weights=c not in ("tokenizer", "scheduler"))


def encoder_by_name(model: str) -> str | None:
    """The text encoder a local d4m generator folder names in d4m.json instead of holding ``text_encoder/`` and
    ``tokenizer/`` (a committed generator carries no third-party weights), else None."""
    path = Path(resolve_model(model)).expanduser()
    if not path.is_dir() or any((path / c).is_dir() for c in TEXT_PARTS):
        return None
    return model_info(model).get("text_encoder")


def load_text_parts(model: str, dtype, table=None) -> tuple:
    """(text encoder, tokenizer) of a model folder: stand-ins for ``table`` (an ``EmbeddingTable``) when given, else
    the folder's own sub-folders, or the encoder its d4m.json names."""
    from transformers import AutoModel, AutoTokenizer

    if table is not None:
        text_encoder, tokenizer = table.generator_parts()
        return text_encoder.to(dtype), tokenizer
    spec = encoder_by_name(model)
    if spec is None:
        text_encoder = load_component(AutoModel.from_pretrained, model, "text_encoder", "text encoder",
                                      library="transformers", dtype=dtype)
        tokenizer = load_component(AutoTokenizer.from_pretrained, model, "tokenizer", "tokenizer",
                                   library="transformers", weights=False, config_name="tokenizer_config.json")
        return text_encoder, tokenizer
    from d4m.text_encoders import LEARNED, MINILM_PACKAGE, TABLE_FILE, EmbeddingTable, load_text_encoder_parts

    table_path = Path(str(model)).expanduser() / TABLE_FILE
    if spec == "minilm" and not installed(MINILM_PACKAGE) and table_path.is_file():
        table = EmbeddingTable.load(table_path)
        if table.source == spec:  # the prompts MiniLM embedded when the generator was made stand in for it
            log.info("text encoder minilm not installed: using %s's embedding table (%d prompts; other prompts "
                     "need pip install 'd4m[minilm]')", model, len(table.prompts))
            return load_text_parts(model, dtype, table)
    if spec == LEARNED:  # a class embedding trained with the UNet: its table is the whole text encoder
        if not table_path.is_file():
            raise ModelError(f"--model {model}: d4m.json says its class embedding was learned, but {TABLE_FILE} "
                             "is missing")
        return load_text_parts(model, dtype, EmbeddingTable.load(table_path))
    max_tokens = model_info(model).get("train", {}).get("max_tokens")
    if not isinstance(max_tokens, int):
        raise ModelError(f"--model {model}: d4m.json names text encoder {spec!r} but not the train.max_tokens its "
                         "prompts were padded to")
    label = f"--model {model}: text encoder {spec!r} (named in its d4m.json)"  # the folder the user gave
    text_encoder, tokenizer, _ = load_text_encoder_parts(spec, max_tokens, dtype=dtype, label=label)
    return text_encoder, tokenizer


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def load_scheduler(model: str, name: str | None = None):
    import diffusers

    config = load_component(diffusers.DDIMScheduler.load_config, model, "scheduler", "scheduler",
                            library="diffusers", weights=False, config_name="scheduler_config.json")
    cls_name = SCHEDULERS.get(name, name) if name else config.get("_class_name")
    cls = getattr(diffusers, str(cls_name), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        choices = ", ".join(SCHEDULERS)
        where = f"--scheduler {name!r}" if name else f"--model {model}: scheduler class {cls_name!r}"
        raise ModelError(f"{where}: not a diffusers scheduler (try --scheduler with one of {choices})")
    try:
        return cls.from_config(config)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelError(f"--model {model}: scheduler/ settings do not fit {cls.__name__} ({exc})") from None


def load_generator(model: str, device="cpu", dtype=torch.float32, scheduler: str | None = None,
                   table=None) -> Generator:
    """A model's UNet, text encoder, tokenizer and scheduler; ``table`` (a ``d4m.text_encoders.EmbeddingTable``)
    stands in for the text encoder where its files are absent (a generator trained on a GPU machine). ``model``
    may be a shipped generator's short name (``d4m.generators``)."""
    from diffusers import UNet2DConditionModel

    given, model = str(model), resolve_model(model)
    check_model_dir(model)
    unet = load_component(UNet2DConditionModel.from_pretrained, model, "unet", "UNet", library="diffusers",
                          torch_dtype=dtype)
    text_encoder, tokenizer = load_text_parts(model, dtype, table)
    sched = load_scheduler(model, scheduler)
    info = model_info(model)
    for m in (unet, text_encoder):
        m.to(device).eval().requires_grad_(False)
    return Generator(unet, text_encoder, tokenizer, sched, given, info)  # runs record the name given


def model_info(model: str) -> dict:
    """MODEL/d4m.json (written by ``d4m generator train``) as a dict; {} when there is none."""
    path = Path(resolve_model(model)).expanduser() / "d4m.json"
    return read_json(path, "d4m.json") if path.is_file() else {}


@torch.no_grad()
def embed_prompts(gen: Generator, prompts: list[str], device) -> torch.Tensor:
    """Token embeddings [n, L, D] of ``prompts`` (padded to the tokenizer's max length, as diffusers does)."""
    tok = gen.tokenizer(prompts, padding="max_length", max_length=gen.tokenizer.model_max_length,
                        truncation=True, return_tensors="pt")
    kwargs = {}
    if getattr(gen.text_encoder.config, "use_attention_mask", False) or gen.info.get("text_attention_mask"):
        kwargs["attention_mask"] = tok.attention_mask.to(device)
    return gen.text_encoder(tok.input_ids.to(device), **kwargs)[0]


def check_compatible(gen: Generator, codec, cfg) -> None:
    """Everything about the models that would otherwise fail (or quietly mislead) mid-run, checked at load time."""
    if gen.latent_channels != codec.latent_channels:
        raise ModelError(f"codec {codec.name} has {codec.latent_channels} latent channels but the UNet of "
                         f"{gen.source} takes {gen.latent_channels}")
    width = getattr(gen.text_encoder.config, "hidden_size", None) or getattr(gen.text_encoder.config, "d_model", None)
    cross = gen.unet.config.cross_attention_dim
    cross = set(cross) if isinstance(cross, (list, tuple)) else {cross}
    if width is not None and cross != {width}:
        raise ModelError(f"--model {gen.source}: its text encoder gives {width}-wide embeddings but the UNet "
                         f"cross-attends to width {', '.join(str(c) for c in sorted(cross))}")
    shape = gen.info.get("latent_shape")  # a d4m-trained generator: the latents it learned
    side = cfg.size // codec.downsample
    if isinstance(shape, list) and len(shape) == 3 and shape[1:] != [side, side]:
        trained_size = gen.info.get("size")
        raise ModelError(f"--size {cfg.size}: gives {side}x{side} latents, but {gen.source} was trained on "
                         f"{shape[1]}x{shape[2]} (its --size {trained_size}): pass --size {trained_size} (latents "
                         "it never saw, and each UNet step would work on "
                         f"{(side * side) / (shape[1] * shape[2]):.3g}x as many positions)")
    sched = gen.scheduler
    trained = getattr(sched.config, "num_train_timesteps", None)
    if trained is not None and cfg.steps > trained:
        raise ModelError(f"--steps {cfg.steps}: more than the {trained} timesteps {type(sched).__name__} of "
                         f"{gen.source} was trained with")
    known = getattr(gen.tokenizer, "table_prompts", None)  # an embedding table standing in for the text encoder
    if known is not None:
        from d4m.data.classnames import render_prompt

        wanted = {"--negative-prompt": [cfg.negative_prompt],
                  "--prompt-template": [render_prompt(cfg.prompt_template, t) for t in gen.info.get("label_texts", [])]}
        for flag, prompts in wanted.items():
            missing = [p for p in prompts if p not in known]
            if missing:
                raise ModelError(f"{flag}: prompt {missing[0]!r} is not among the {len(known)} prompts --model "
                                 f"{gen.source} carries embedded; pip install 'd4m[minilm]' for any prompt")
    if cfg.init == "prototypes" and int(cfg.steps * cfg.strength) < 1:
        raise ModelError(f"--strength {cfg.strength} of --steps {cfg.steps} leaves no denoising step (the images "
                         "would be the decoded prototypes); raise one of them, or use --generator none")
    if getattr(cfg, "mode_guidance", 0) > 0:
        from d4m.synthesis.guidance import check_mode_guidance

        try:
            check_mode_guidance(sched)
        except ValueError as exc:
            raise ModelError(f"--mode-guidance {cfg.mode_guidance} with --model {gen.source}: {exc}") from None
    try:
        copy.deepcopy(sched).set_timesteps(cfg.steps, device="cpu")
    except Exception as exc:  # noqa: BLE001 - a scheduler's own settings check, any type
        raise ModelError(f"--model {gen.source}: scheduler {type(sched).__name__} refuses --steps {cfg.steps} "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def load_models(cfg, stage: str, device, dtype):
    """(codec, generator or None) for ``stage``, loaded and checked against each other before any work starts."""
    from d4m.codec import build_codec

    gen = None
    needs_gen = stage != "prototypes" and cfg.generator == "model"
    if cfg.codec == "model" or needs_gen:
        check_model_dir(cfg.model)
    codec = build_codec(cfg.codec, cfg.model, device=device, dtype=dtype, posterior=cfg.posterior)
    if cfg.size % codec.downsample:
        raise ModelError(f"--size {cfg.size}: codec {codec.name} needs a multiple of {codec.downsample}")
    if needs_gen:
        gen = load_generator(cfg.model, device=device, dtype=dtype, scheduler=cfg.scheduler)
        check_compatible(gen, codec, cfg)
    return codec, gen
