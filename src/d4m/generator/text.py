"""The frozen text encoder a generator trains against (loaded by name in ``d4m.text_encoders``: ``clip``,
``minilm``, a hub id or a local folder); its prompt embeddings stored as a table live there too.

Prompts are embedded by ``d4m.synthesis.generator.embed_prompts``, the very function synthesis uses, so training
and synthesis see identical token embeddings (same padding length, same attention-mask rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from d4m.synthesis.generator import Generator, embed_prompts
from d4m.text_encoders import load_text_encoder_parts


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
