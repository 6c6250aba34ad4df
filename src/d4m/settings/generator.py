"""Settings of generator train (``d4m.generator.config.TrainConfig``) and generator sample."""

from __future__ import annotations

from d4m.settings.base import GS, GT, S

GENERATOR = (
    # generator train (d4m.generator.train.TrainConfig)
    S("--data", "dataset: cifar10:ROOT | folder:PATH | ... (its train split)", (GT,), required=True),
    S("--codec", "codec whose latents the model learns: taef2 | taef2:DIR | vae:PATH", (GT,), required=True),
    S("--out", "model folder: only what sampling needs (unet/, scheduler/, d4m.json; text_encoder/ and tokenizer/ "
      "unless d4m.json can name the encoder)", (GT,), required=True),
    S("--size", "images squashed to SIZE x SIZE before encoding (as `d4m distill --size`)", (GT,), "pixels",
      type=int),
    S("--text-encoder", "clip (SD v1.5's, openai/clip-vit-large-patch14) | minilm | PATH_OR_HUB_ID | learned (a "
      "class embedding trained with the UNet: one 384-wide token per class)", (GT,)),
    S("--preset", "UNet: tiny | small (CPU) | wide | base (GPU)", (GT,)),
    S("--epochs", "passes over the training latents (with --max-steps and --max-minutes: whichever ends first)",
      (GT,), "epochs", type=int),
    S("--max-steps", "stop after this many optimisation steps (overrides --epochs)", (GT,), "steps", unset="--epochs",
      type=int),
    S("--max-minutes", "wall-time budget: stop at the first step boundary past it, with a checkpoint and the final "
      "export (--resume continues)", (GT,), "minutes", unset="no limit", type=float),
    S("--batch-size", "latents per optimisation step", (GT,), "latents", type=int),
    S("--lr", "AdamW learning rate after warm-up (constant)", (GT,), "per step", type=float),
    S("--weight-decay", "AdamW weight decay", (GT,), "per step", type=float),
    S("--warmup-steps", "linear learning-rate warm-up", (GT,), "steps", type=int),
    S("--ema-decay", "largest EMA decay (warm-up 1 - (1 + step)^-2/3)", (GT,), "per step", type=float),
    S("--cond-drop", "fraction of samples trained with the empty prompt (CFG)", (GT,), "fraction", type=float),
    S("--max-tokens", "prompt length the tokenizer pads to", (GT,), "tokens", type=int),
    S("--max-per-class", "train on a seeded subset of at most N images per class", (GT,), "images", unset="all",
      type=int),
    S("--checkpoint-every", "steps between checkpoints (and model exports)", (GT,), "steps", type=int),
    S("--seed", "seed of the initial weights, the subset and the noise", (GT,), type=int),
    S("--seed", "seed of every image's noise (with its class and index)", (GS,), type=int, default=0),
    S("--mixed-precision", "auto (bf16/fp16 on CUDA, none on CPU) | no | bf16 | fp16", (GT,)),
    S("--device", "auto | cpu | cuda:0 ...", (GT,)),
    S("--workers", "data-loader workers for encoding", (GT,), "processes", type=int),
    S("--encode-batch-size", "images encoded together", (GT,), "images", type=int),
    S("--latent-norm", "channel (per-channel mean/std of the training latents) | global (one scale)", (GT,)),
    S("--prediction", "what the UNet predicts: v_prediction | epsilon", (GT,)),
    S("--snr-gamma", "min-SNR-gamma loss weighting, e.g. 5; 0 or none: the plain loss", (GT,), type=float),
    S("--schedule", "noise schedule: sd (SD v1.5's) | sd-zero-snr (SD's with zero terminal SNR, needs v_prediction) "
      "| cosine", (GT,), unset="sd-zero-snr with v_prediction, sd with epsilon"),
    S("--latent-cache", "folder for the encoded latents, shared between runs", (GT,), unset="OUT.work/, beside OUT"),
    S("--compile", "torch.compile the UNet: no | default | reduce-overhead (+ CUDA graphs) | max-autotune; the same "
      "model, fewer kernel launches per step on a GPU", (GT,)),
    S("--threads", "CPU threads for torch (1 is often fastest on busy shared cores)", (GT, GS), "threads",
      unset="torch's", type=int),
    S("--strict", "a class folder of --data that holds no image is an error, not a warning", (GT,),
      action="store_true", default=None),
    S("--resume", "continue from the checkpoint in OUT.work/", (GT,), action="store_true"),
    # generator sample
    S("--model", "a folder written by `d4m generator train`, or a shipped one by name (cifar10-taef2)", (GS,),
      required=True),
    S("--codec", "decoder of the latents", (GS,), unset="the codec in the model's d4m.json"),
    S("--per-class", "images per class", (GS,), "images", type=int, required=True),
    S("--out", "output ImageFolder (one 000_name/ folder per class)", (GS,), required=True),
    S("--steps", "scheduler steps", (GS,), "steps", type=int, default=50),
    S("--guidance", "classifier-free guidance scale (<= 1: none; 8 is distillation's and the paper's)", (GS,),
      "scale", type=float, default=8.0),
    S("--scheduler", "sampler instead of the model's own: ddim | dpm (DPM-Solver++) | euler | ...", (GS,),
      unset="the model's"),
    S("--batch-size", "images sampled together", (GS,), "images", type=int, default=50),
    S("--grid", "also write a PNG grid (one row per class, up to 10 per row) here", (GS,)),
)
