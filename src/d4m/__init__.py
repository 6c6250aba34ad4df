"""d4m: dataset distillation with a pretrained latent diffusion model (D4M, Su et al., CVPR 2024)."""

__version__ = "0.1.0"
