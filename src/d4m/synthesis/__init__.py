"""Stage 2: denoise each prototype from a noise level set by the strength, conditioned on its label text."""
