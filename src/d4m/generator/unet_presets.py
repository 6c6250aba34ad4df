"""Size presets of the diffusers UNet2DConditionModel that denoises codec latents.

Parameter counts for 32-channel 8x8 latents (TAEF2 at 64 px) and a 384-wide text encoder (MiniLM):
tiny about 0.3 M (tests), small about 6.3 M (CPU), base about 51 M (GPU). ``wide`` has two levels only (8x8 and
4x4 for 8x8 latents: no 2x2 level that a small grid wastes compute on), wider and deeper, with self- and
cross-attention at both.

The noise schedule and the parameterisation are training options (``schedule``, ``prediction``); the sampler saved
with the model carries the same betas and ``prediction_type``, so img2img and text-to-image read it unchanged.
"""

from __future__ import annotations

from d4m.errors import ConfigError

PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=2, norm_num_groups=8),
    "small": dict(block_out_channels=(64, 128, 128), layers_per_block=1, attention_head_dim=4, norm_num_groups=32),
    "wide": dict(block_out_channels=(128, 256), layers_per_block=2, attention_head_dim=8, norm_num_groups=32),
    "base": dict(block_out_channels=(128, 256, 384), layers_per_block=2, attention_head_dim=8, norm_num_groups=32),
}


def unet_config(preset: str, latent_channels: int, latent_size: int, cross_attention_dim: int) -> dict:
    """UNet2DConditionModel keyword arguments: cross-attention at every level but the lowest resolution."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: unknown UNet size (one of {', '.join(PRESETS)})")
    p = dict(PRESETS[preset])
    levels = len(p["block_out_channels"])
    if latent_size % (2 ** (levels - 1)):
        raise ConfigError(f"--size gives {latent_size}x{latent_size} latents, not divisible by {2 ** (levels - 1)} "
                          f"as the {preset} UNet's {levels} levels need: use a larger --size")
    if levels == 2:  # two levels: attend at both
        down, up = ("CrossAttnDownBlock2D",) * 2, ("CrossAttnUpBlock2D",) * 2
    else:
        down = ("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",)
        up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (levels - 1)
    return dict(sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
                down_block_types=down, up_block_types=up, cross_attention_dim=cross_attention_dim, **p)


def build_unet(preset: str, latent_channels: int, latent_size: int, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(preset, latent_channels, latent_size, cross_attention_dim))


SCHEDULES = {
    # SD v1.5's betas: ``--strength 0.7`` means what it means with Stable Diffusion (noise at t about 700)
    "sd": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    # the same betas rescaled so the last step is pure noise (Lin et al. 2024); needs v-prediction
    "sd-zero-snr": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                        rescale_betas_zero_snr=True),
    # the cosine schedule of improved DDPM (alphas_cumprod follows cos^2, betas capped at 0.999)
    "cosine": dict(beta_schedule="squaredcos_cap_v2"),
}
PREDICTIONS = ("epsilon", "v_prediction")


def noise_schedulers(prediction: str = "epsilon", schedule: str = "sd"):
    """(DDPMScheduler for training, DDIMScheduler saved as the model's sampler) sharing betas and prediction type."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if schedule not in SCHEDULES:
        raise ConfigError(f"--schedule {schedule!r}: unknown (one of {', '.join(SCHEDULES)})")
    if prediction not in PREDICTIONS:
        raise ConfigError(f"--prediction {prediction!r}: unknown (one of {', '.join(PREDICTIONS)})")
    common = dict(num_train_timesteps=1000, prediction_type=prediction, clip_sample=False, **SCHEDULES[schedule])
    # with a zero-SNR schedule sampling must start at t = 999 (trailing spacing), where the model sees pure noise
    spacing = "trailing" if schedule == "sd-zero-snr" else "leading"
    return (DDPMScheduler(**common),
            DDIMScheduler(**common, set_alpha_to_one=False, steps_offset=0 if spacing == "trailing" else 1,
                          timestep_spacing=spacing))
