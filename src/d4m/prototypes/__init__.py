"""Stage 1: encode each class's images and cluster the latents into IPC prototypes."""
