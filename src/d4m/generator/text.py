"""The frozen text encoder a generator cross-attends to (loaded by name in ``d4m.text_encoders``: ``clip``,
``minilm``, a hub id or a local folder), and the embedding table that stands in for it where it cannot go.

Prompts are embedded by ``d4m.synthesis.generator.embed_prompts``, the very function synthesis uses, so training
and synthesis see identical token embeddings (same padding length, same attention-mask rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from d4m import text_encoders
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


class EmbeddingTable(text_encoders.EmbeddingTable):
    """``d4m.text_encoders.EmbeddingTable`` (prompt embeddings standing in for their encoder) that also builds the
    generator which cross-attends to them, and is built from a loaded encoder."""

    @classmethod
    def of(cls, encoder: TextEncoder, prompts: list[str]) -> "EmbeddingTable":
        prompts = list(dict.fromkeys(prompts))
        return cls(prompts, encoder.embed(prompts, "cpu").cpu(), encoder.attention_mask, encoder.source)

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
