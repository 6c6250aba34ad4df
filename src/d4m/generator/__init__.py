"""Train a small text-conditioned latent diffusion model on a dataset's codec latents (for `d4m distill`)."""
