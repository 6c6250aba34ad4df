"""The settings of ``d4m generator train`` (``TrainConfig``), apart from the training code so that reading them
(``d4m.settings``, ``help(d4m.train_generator)``) imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from d4m.checks import on_device
from d4m.errors import ConfigError
from d4m.generator.unet_presets import PREDICTIONS, PRESETS, SCHEDULES

RESUME_FREE = ("epochs", "max_steps", "max_minutes", "checkpoint_every", "workers", "device", "mixed_precision",
               "encode_batch_size", "latent_cache", "compile", "strict")
LEGACY = {"latent_norm": "global", "prediction": "epsilon", "snr_gamma": None, "schedule": "sd"}  # before these options
LATENT_NORMS = ("channel", "global")
# memory estimates, before anything is allocated: a latent of an image of s x s px is at most 32 channels at s / 8
# (TAEF2's; SD's VAE has 4), float32: 2 s^2 bytes; a UNet's peak activations are tens of times its input
LATENT_BYTES, ACTIVATIONS = 2, 64
COMPILE_MODES = ("no", "default", "reduce-overhead", "max-autotune")  # torch.compile's modes (reduce-overhead: + CUDA graphs)


@dataclass
class TrainConfig:
    data: str
    codec: str
    out: str
    size: int = 64
    text_encoder: str = "clip"
    preset: str = "small"
    epochs: int = 50
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-time budget: stop at the first step boundary past it (resumable)
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    ema_decay: float = 0.9999
    cond_drop: float = 0.1
    max_tokens: int = 32
    max_per_class: int | None = None
    checkpoint_every: int = 500
    seed: int = 0
    mixed_precision: str = "auto"
    device: str = "auto"
    workers: int = 0
    encode_batch_size: int = 64
    latent_norm: str = "channel"  # per-channel mean/std of the training latents | one global scale (older models)
    prediction: str = "v_prediction"  # what the UNet predicts: v_prediction | epsilon (older models)
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting (None or 0: the plain loss)
    schedule: str | None = None  # sd | sd-zero-snr (needs v_prediction) | cosine; None: zero-SNR for v, sd for epsilon
    latent_cache: str | None = None  # folder of the encoded latents, shareable between runs (default: OUT.work/)
    compile: str = "no"  # torch.compile the UNet in place (one of COMPILE_MODES): the same model, fewer launches
    strict: bool = False  # a class folder of --data without images is an error, not a warning

    def __post_init__(self) -> None:
        if self.schedule is None:  # the screens (RESULTS.md 2.1): zero terminal SNR pays with v-prediction
            self.schedule = "sd-zero-snr" if self.prediction == "v_prediction" else "sd"

    def validate(self, device: str = "cpu") -> None:
        """Refuse invalid or absurd settings in one line; the batch memory is checked against ``device``'s (a CUDA
        device's free memory, else the host's)."""
        checks = [("--epochs", self.epochs >= 1), ("--batch-size", self.batch_size >= 1), ("--lr", self.lr > 0),
                  ("--cond-drop", 0 <= self.cond_drop < 1), ("--ema-decay", 0 <= self.ema_decay < 1),
                  ("--size", self.size >= 8 and self.size % 8 == 0), ("--checkpoint-every", self.checkpoint_every >= 1),
                  ("--max-steps", self.max_steps is None or self.max_steps >= 1),
                  ("--max-minutes", self.max_minutes is None or self.max_minutes > 0),
                  ("--mixed-precision", self.mixed_precision in ("auto", "no", "bf16", "fp16")),
                  ("--preset", self.preset in PRESETS), ("--latent-norm", self.latent_norm in LATENT_NORMS),
                  ("--prediction", self.prediction in PREDICTIONS), ("--schedule", self.schedule in SCHEDULES),
                  ("--snr-gamma", self.snr_gamma is None or self.snr_gamma >= 0),
                  ("--compile", self.compile in COMPILE_MODES)]
        for flag, ok in checks:
            if not ok:
                raise ConfigError(f"{flag} {getattr(self, flag[2:].replace('-', '_'))!r}: invalid value")
        bounds = (("--epochs", self.epochs, 100_000), ("--max-steps", self.max_steps, 10**9),
                  ("--batch-size", self.batch_size, 100_000), ("--size", self.size, 4096),
                  ("--encode-batch-size", self.encode_batch_size, 100_000), ("--max-tokens", self.max_tokens, 4096))
        for flag, value, high in bounds:
            if value is not None and value > high:
                raise ConfigError(f"{flag} {value}: more than d4m runs ({high:,})")
        on_device(f"--batch-size {self.batch_size}", self.batch_size * LATENT_BYTES * self.size ** 2 * ACTIVATIONS,
                  f"a training batch of {self.batch_size} at {self.size} px", device)
        on_device(f"--encode-batch-size {self.encode_batch_size}", self.encode_batch_size * 12 * self.size ** 2 * 32,
                  f"encoding {self.encode_batch_size} images at a time at {self.size} px", device)
        if self.schedule == "sd-zero-snr" and self.prediction != "v_prediction":
            raise ConfigError("--schedule sd-zero-snr needs --prediction v_prediction (at zero SNR the noise is the "
                              "input itself: epsilon-prediction cannot recover the image)")
