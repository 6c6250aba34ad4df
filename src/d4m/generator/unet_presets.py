"""Size presets of the diffusers UNet2DConditionModel that denoises codec latents.

Parameter counts for 32-channel 8x8 latents (TAEF2 at 64 px) and a 384-wide text encoder (MiniLM):
tiny about 0.3 M (tests), small about 6.3 M (CPU), base about 51 M (GPU).
"""

from __future__ import annotations

from d4m.errors import ConfigError

PRESETS = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=2, norm_num_groups=8),
    "small": dict(block_out_channels=(64, 128, 128), layers_per_block=1, attention_head_dim=4, norm_num_groups=32),
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


def noise_schedulers():
    """(DDPMScheduler for training, DDIMScheduler saved as the model's sampler): SD v1.5's betas and settings.

    SD's schedule keeps ``--strength 0.7`` meaning what it means with Stable Diffusion (noise at t about 700).
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type="epsilon", clip_sample=False)
    return DDPMScheduler(**common), DDIMScheduler(**common, set_alpha_to_one=False, steps_offset=1)
