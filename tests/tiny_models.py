"""Tiny random diffusers / transformers models saved with save_pretrained, for tests of the real loading path."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def write_clip_tokenizer(folder: Path, max_length: int = 16) -> None:
    """A character-level CLIP BPE vocabulary (every lowercase letter and digit, with and without </w>)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ",.-'")
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + chars + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


def make_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A 16-wide, one-layer CLIP text encoder with its tokenizer files (a generator's text encoder in tests)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(folder)
    write_clip_tokenizer(folder)
    return folder


def make_tiny_sd(folder: Path, latent_channels: int = 4, seed: int = 0) -> Path:
    """A Stable-Diffusion-shaped model: UNet2DConditionModel, AutoencoderKL, CLIP text encoder, PNDM scheduler."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(folder)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=latent_channels, out_channels=latent_channels, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=2,
        norm_num_groups=4)
    unet.save_pretrained(folder / "unet")
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=64, scaling_factor=0.18215)
    vae.save_pretrained(folder / "vae")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    text.save_pretrained(folder / "text_encoder")
    write_clip_tokenizer(folder / "tokenizer")
    write_sd_extras(folder)
    return folder


def write_sd_extras(folder: Path) -> None:
    """SD v1.5's PNDM scheduler config and a model_index.json naming the components (no safety checker)."""
    from diffusers import PNDMScheduler

    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  set_alpha_to_one=False, steps_offset=1).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False}))
