"""Load a text-conditioned latent diffusion model's parts with ``from_pretrained`` (hub id or local directory).

The parts are the diffusers UNet2DConditionModel, the transformers text encoder and tokenizer, and the model's
own scheduler (or one named by ``--scheduler``). No pipeline object and no safety checker are built: the safety
checker blacks out images it flags, which would silently remove distilled images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from d4m.errors import ModelError

COMPONENTS = ("unet", "text_encoder", "tokenizer", "scheduler")
SCHEDULERS = {"pndm": "PNDMScheduler", "ddim": "DDIMScheduler", "ddpm": "DDPMScheduler",
              "euler": "EulerDiscreteScheduler", "dpm": "DPMSolverMultistepScheduler", "lms": "LMSDiscreteScheduler"}


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


def check_model_dir(model: str) -> None:
    """A local folder must hold every component; name the first missing one."""
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
    for c in COMPONENTS:
        if not (path / c).is_dir():
            raise ModelError(f"--model {model}: missing component {c}/")


def _load(what: str, fn, model: str, subfolder: str, **kwargs):
    try:
        return fn(model, subfolder=subfolder, **kwargs)
    except (OSError, ValueError, KeyError, EnvironmentError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"--model {model}: cannot load {what} from {subfolder}/: {first}") from None


def load_scheduler(model: str, name: str | None = None):
    import diffusers

    config = _load("the scheduler", diffusers.DDIMScheduler.load_config, model, "scheduler")
    cls_name = SCHEDULERS.get(name, name) if name else config.get("_class_name")
    cls = getattr(diffusers, str(cls_name), None)
    if cls is None or not hasattr(cls, "from_config"):
        choices = ", ".join(SCHEDULERS)
        raise ModelError(f"--scheduler {name or cls_name!r}: unknown diffusers scheduler (try one of {choices})")
    return cls.from_config(config)


def load_generator(model: str, device="cpu", dtype=torch.float32, scheduler: str | None = None) -> Generator:
    from diffusers import UNet2DConditionModel
    from transformers import AutoModel, AutoTokenizer

    check_model_dir(model)
    unet = _load("the UNet", UNet2DConditionModel.from_pretrained, model, "unet", torch_dtype=dtype)
    text_encoder = _load("the text encoder", AutoModel.from_pretrained, model, "text_encoder", dtype=dtype)
    tokenizer = _load("the tokenizer", AutoTokenizer.from_pretrained, model, "tokenizer")
    sched = load_scheduler(model, scheduler)
    info_path = Path(model).expanduser() / "d4m.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    for m in (unet, text_encoder):
        m.to(device).eval().requires_grad_(False)
    return Generator(unet, text_encoder, tokenizer, sched, model, info)


@torch.no_grad()
def embed_prompts(gen: Generator, prompts: list[str], device) -> torch.Tensor:
    """Token embeddings [n, L, D] of ``prompts`` (padded to the tokenizer's max length, as diffusers does)."""
    tok = gen.tokenizer(prompts, padding="max_length", max_length=gen.tokenizer.model_max_length,
                        truncation=True, return_tensors="pt")
    kwargs = {}
    if getattr(gen.text_encoder.config, "use_attention_mask", False) or gen.info.get("text_attention_mask"):
        kwargs["attention_mask"] = tok.attention_mask.to(device)
    return gen.text_encoder(tok.input_ids.to(device), **kwargs)[0]
