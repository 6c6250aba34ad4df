"""The frozen text encoder a generator cross-attends to (loaded by name in ``d4m.text_encoders``: ``clip``,
``minilm``, a hub id or a local folder), and the embedding table that stands in for it where it cannot go.

Prompts are embedded by ``d4m.synthesis.generator.embed_prompts``, the very function synthesis uses, so training
and synthesis see identical token embeddings (same padding length, same attention-mask rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from d4m.errors import ModelError
from d4m.pretrained import load_component
from d4m.synthesis.generator import Generator, embed_prompts
from d4m.text_encoders import (  # noqa: F401  (re-exported: the encoder names and checks live there)
    CLIP_ID, MINILM_PACKAGE, MINILM_SHA256, NO_MASK_TYPES, load_text_encoder_parts, minilm_dir, resolve_source)


@dataclass
class TextEncoder:
    model: torch.nn.Module
    tokenizer: object
    attention_mask: bool
    source: str

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, prompts: list[str], device) -> torch.Tensor:
        """[n, max_tokens, hidden] token embeddings, exactly as synthesis computes them."""
        stand_in = Generator(None, self.model, self.tokenizer, None, self.source,
                             {"text_attention_mask": self.attention_mask})
        return embed_prompts(stand_in, prompts, device).float()

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(Path(folder) / "text_encoder")
        self.tokenizer.save_pretrained(Path(folder) / "tokenizer")


def load_text_encoder(spec: str, max_tokens: int, device="cpu") -> TextEncoder:
    """The frozen encoder and its tokenizer, the tokenizer set to pad prompts to ``max_tokens``."""
    model, tokenizer, attention_mask = load_text_encoder_parts(spec, max_tokens, device)
    return TextEncoder(model, tokenizer, attention_mask, spec)


class EmbeddingTable:
    """Prompt embeddings computed once by a text encoder, standing in for it where it cannot go.

    Train (``run_train(..., text=table)``) or synthesise on a machine that lacks the encoder's files: ``embed``
    returns the stored rows of exactly the prompts it was built with (any other prompt is an error), and
    ``generator_parts`` gives a tokenizer/encoder pair that ``embed_prompts`` calls like the real ones. A model
    trained this way is exported without ``text_encoder/``; ``TextEncoder.save`` joins it later.
    """

    model = None  # no encoder weights to export

    def __init__(self, prompts: list[str], table: torch.Tensor, attention_mask: bool, source: str):
        if table.ndim != 3 or table.shape[0] != len(prompts):
            raise ValueError(f"embedding table {tuple(table.shape)} does not hold one [L, D] row per prompt")
        self.prompts, self.table = list(prompts), table.float()
        self.attention_mask, self.source = bool(attention_mask), source

    @classmethod
    def of(cls, encoder: TextEncoder, prompts: list[str]) -> "EmbeddingTable":
        prompts = list(dict.fromkeys(prompts))
        return cls(prompts, encoder.embed(prompts, "cpu").cpu(), encoder.attention_mask, encoder.source)

    @property
    def hidden_size(self) -> int:
        return int(self.table.shape[-1])

    @property
    def max_tokens(self) -> int:
        return int(self.table.shape[1])

    def rows(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in prompts if p not in self.prompts]
        if missing:
            raise ConfigError(f"prompt {missing[0]!r} is not in the embedding table ({len(self.prompts)} prompts)")
        return torch.tensor([self.prompts.index(p) for p in prompts], dtype=torch.long)

    def embed(self, prompts: list[str], device) -> torch.Tensor:
        return self.table[self.rows(prompts)].to(device)

    def save(self, path: Path) -> None:
        import json

        from safetensors.torch import save

        from d4m.runio.atomic import atomic_write_bytes

        meta = {"prompts": json.dumps(self.prompts), "attention_mask": str(self.attention_mask),
                "source": self.source}
        atomic_write_bytes(Path(path), save({"table": self.table.contiguous()}, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> "EmbeddingTable":
        import json

        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as fh:
                meta, table = fh.metadata() or {}, fh.get_tensor("table")
            return cls(json.loads(meta["prompts"]), table, meta["attention_mask"] == "True", meta["source"])
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: not an embedding table ({exc.__class__.__name__}: {exc})") from None

    def generator_parts(self) -> tuple[torch.nn.Module, object]:
        """(text encoder, tokenizer) stand-ins: the tokenizer maps a prompt to its row, the encoder returns it."""
        table = self

        class _Tokens(dict):
            __getattr__ = dict.__getitem__

        class Tokenizer:
            model_max_length = table.max_tokens

            def __call__(self, prompts, **_):
                ids = table.rows(list(prompts))[:, None]
                return _Tokens(input_ids=ids, attention_mask=torch.ones_like(ids))

        class Encoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.config = type("Config", (), {"use_attention_mask": False, "hidden_size": table.hidden_size})()
                self.register_buffer("table", table.table.clone(), persistent=False)

            def forward(self, input_ids, **_):
                return (self.table[input_ids[:, 0]],)

        return Encoder(), Tokenizer()

    def generator(self, model: str | Path, device="cpu", dtype=torch.float32, scheduler: str | None = None) -> Generator:
        """A model folder's UNet, scheduler and d4m.json with these embeddings as its text encoder (no text_encoder/
        needed): what ``sample_to_folder`` and synthesis take in place of ``load_generator``'s result."""
        from diffusers import UNet2DConditionModel

        from d4m.synthesis.generator import load_scheduler, model_info

        model = str(model)
        unet = load_component(UNet2DConditionModel.from_pretrained, model, "unet", "UNet", library="diffusers",
                              torch_dtype=dtype)
        info = model_info(model)
        encoder, tokenizer = self.generator_parts()
        for m in (unet, encoder):
            m.to(device).eval().requires_grad_(False)
        encoder.to(dtype)
        return Generator(unet, encoder, tokenizer, load_scheduler(model, scheduler), model, info)
