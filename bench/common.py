"""Shared helpers for the d4m benchmarks: timing, machine description, result records, tiny model builders.

Every benchmark runs d4m and its baseline in the same process, interleaved rep by rep, and reports the median of
the per-rep ratios (the machine's cores are shared, so absolute times are noisy; ratios of neighbours are not).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.tiny_models
from tests.tiny_models import write_clip_tokenizer, write_sd_extras  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    """CPU model and core count from lscpu, plus Python/torch versions."""
    info = {"cpu": platform.processor() or "?", "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            elif key.strip() == "CPU(s)":
                info["cores"] = int(value.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return info


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def median(xs):
    return statistics.median(xs)


def ratio_line(name: str, value: float, target: str, met: bool | None, unit: str = "x") -> str:
    """The line every benchmark prints per comparison (the smoke test looks for 'RATIO ')."""
    flag = "n/a" if met is None else ("MET" if met else "MISSED")
    return f"RATIO {name}: {value:.3g}{unit} (target {target}) {flag}"


def save_result(name: str, record: dict) -> Path:
    """Write ``bench/results/<name>.json`` (read by run_all.py to fill BENCHMARKS.md)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"benchmark": name, "command": " ".join([Path(sys.executable).name] + sys.argv),
              "machine": machine(), **record}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


# SD v1.5's UNet block structure; the widths are the only thing scaled down in the CPU benchmark
SD15_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD15_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")


def make_sd_model(folder: Path, *, widths=(32, 64, 64, 64), cross_dim: int = 64, head_dim: int = 8,
                  text_layers: int = 2, text_ffn: int = 256, vae_widths=(16, 32, 32, 32), full_sd15: bool = False,
                  seed: int = 0) -> Path:
    """A random-weight SD1.5-shaped model folder (unet, vae, text_encoder, tokenizer, scheduler) via save_pretrained.

    ``full_sd15``: SD v1.5's real sizes (UNet 320/640/1280/1280, cross-attention 768, CLIP-L text encoder with
    12 layers, the SD VAE); otherwise the same structure with the widths given.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(folder)
    if full_sd15:
        widths, cross_dim, head_dim, text_layers, text_ffn = (320, 640, 1280, 1280), 768, 8, 12, 3072
        vae_widths = (128, 256, 512, 512)
    groups = 32 if min(widths) % 32 == 0 else 8
    unet = UNet2DConditionModel(
        sample_size=64 if full_sd15 else 16, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=tuple(widths), down_block_types=SD15_DOWN, up_block_types=SD15_UP,
        cross_attention_dim=cross_dim, attention_head_dim=head_dim, norm_num_groups=groups)
    unet.save_pretrained(folder / "unet")
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=tuple(vae_widths),
                        layers_per_block=2 if full_sd15 else 1, norm_num_groups=32 if full_sd15 else 8,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512 if full_sd15 else 128, scaling_factor=0.18215)
    vae.save_pretrained(folder / "vae")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=1000 if not full_sd15 else 49408, hidden_size=cross_dim,
                                        intermediate_size=text_ffn, num_hidden_layers=text_layers,
                                        num_attention_heads=max(1, cross_dim // 64), max_position_embeddings=77,
                                        projection_dim=cross_dim, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    text.save_pretrained(folder / "text_encoder")
    write_clip_tokenizer(folder / "tokenizer", max_length=77)
    write_sd_extras(folder)
    return folder


def mode_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite (seconds, numbers meaningless)")
