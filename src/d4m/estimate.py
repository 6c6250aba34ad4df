"""The expected time of a distillation, printed before the work starts.

It is an estimate: the number of images of each stage times a per-image cost timed on this machine just before the
work (one warm-up, then the fastest of three timed batches of the codec's encoder, of one UNet step with classifier-free guidance and of
the decoder, on constant inputs: no random number is drawn, so the run's outputs do not change). Reading and
decoding the dataset's files, k-means and writing PNGs are not counted, and other jobs on the machine change the
real time. BENCHMARKS.md (section "The embedded main job") compares it with measured stage rates.
"""

from __future__ import annotations

import time

import torch


def denoising_steps(cfg) -> int:
    """UNet evaluations per image: the whole schedule from noise, else the strength's share of it."""
    return int(cfg.steps) if cfg.init == "noise" else int(cfg.steps * cfg.strength)


def _timed(fn, repeats: int = 3) -> float:
    """Seconds of one call of ``fn``: the fastest of ``repeats`` timed calls after a warm-up. The minimum, because
    other jobs on a shared machine only ever add time: one call preempted by them (a 46-minute estimate for a
    7-minute run, seen under load) must not stand for the run."""
    fn()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def seconds_per_image(cfg, codec, gen, device, dtype, stages=("prototypes", "synthesis")) -> dict[str, float]:
    """Per stage, seconds of model compute per image (the encoder; UNet steps plus the decoder)."""
    out = {}
    small = cfg.size <= 128
    if "prototypes" in stages:
        b = min(cfg.encode_batch_size, 4 if small else 1)
        x = torch.full((b, 3, cfg.size, cfg.size), 0.5)
        gens = [torch.Generator().manual_seed(i) for i in range(b)]  # private generators: a VAE samples its posterior
        out["prototypes"] = _timed(lambda: codec.encode(x, gens)) / b
    if "synthesis" in stages:
        b = min(cfg.batch_size, 4 if small else 1)
        side = cfg.size // codec.downsample
        z = torch.zeros(b, codec.latent_channels, side, side, device=device)
        step = 0.0
        if gen is not None:
            guided = 2 if cfg.guidance > 1.0 else 1
            cross = gen.unet.config.cross_attention_dim
            width = int(cross[0] if isinstance(cross, (list, tuple)) else cross)
            length = int(getattr(gen.tokenizer, "model_max_length", 77))
            emb = torch.zeros(guided * b, length, width, device=device, dtype=dtype)
            zin = torch.zeros(guided * b, *z.shape[1:], device=device, dtype=dtype)
            t = torch.tensor(int(gen.scheduler.config.num_train_timesteps) // 2, device=device)
            step = _timed(lambda: gen.unet(zin, t, encoder_hidden_states=emb, return_dict=False))
        decode = _timed(lambda: codec.decode(z))
        out["synthesis"] = (denoising_steps(cfg) * step + decode) / b
    return out


def expected_line(counts: dict[str, int], per_image: dict[str, float]) -> str:
    """One line: per stage images, images/s and minutes; the total."""
    parts, total = [], 0.0
    for stage, n in counts.items():
        s = per_image[stage] * n
        total += s
        rate = 1.0 / per_image[stage] if per_image[stage] > 0 else float("inf")
        parts.append(f"{stage} {n:,} images at {_rate(rate)}/s = {_duration(s)}")
    return (f"expected time about {_duration(total)} ({'; '.join(parts)}). An estimate: model compute timed here "
            "just now (the fastest of three batches); reading images, k-means and other jobs on this machine are "
            "not counted")


def _rate(per_second: float) -> str:
    """Images per second with three significant digits: 0.0417, 4.17, 417 (never a bare 0.0)."""
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
