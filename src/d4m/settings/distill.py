"""Settings of distill, prototypes, synthesize (``d4m.config.DistillConfig``; presets and --config YAML use the same
names) and sweep."""

from __future__ import annotations

from d4m.settings.base import _D, _P, _S, PRESETS_HELP, S

DISTILLATION = (
    # the distillation commands (d4m.config.DistillConfig; presets and --config YAML use the same names)
    S("--data", "dataset: cifar10:ROOT | cifar100:ROOT | tiny-imagenet:ROOT | imagenet:ROOT | folder:PATH | "
      "hf:PATH[:SPLIT]", _P, unset="required"),
    S("--out", "run directory", _P, unset="required"),
    S("--out", "run directory for the images; a new one gets a copy of the prototypes, so one set of prototypes feeds "
      "several syntheses", ("synthesize",), unset="--run itself"),
    S("--run", "run directory holding prototypes.safetensors (from `d4m prototypes`)", ("synthesize",),
      required=True),
    S("--config", "YAML file with any of these settings, spelled with '_' (flags override it)", _P),
    S("--preset", PRESETS_HELP, _P),
    S("--force", "overwrite a run directory made with another configuration", _D, action="store_true"),
    S("--ipc", "images per class (= k-means centres)", _P, "images", type=int),
    S("--ipc", "images per class (more than the prototypes: they are reused with other seeds)",
      ("synthesize",), "images", type=int),
    S("--max-per-class", "cluster a seeded subset of at most N images per class", _P, "images", unset="all",
      type=int),
    S("--allow-short", "a class with fewer images than IPC reuses its prototypes (different seeds) instead of "
      "failing", _P, action="store_true", default=None),
    S("--strict", "a corrupt image file is an error, not a skipped and counted file; so is a class folder that "
      "holds no image, not a warning", _P, action="store_true", default=None),
    S("--model", "diffusers text-to-image model: hub id or local directory, or a generator shipped with d4m by name "
      "(cifar10-taef2)", _D),
    S("--codec", "model (the model's own VAE) | vae:PATH (any AutoencoderKL) | taef2 (fetched by name into torch's "
      "hub cache, checksummed) | taef2:DIR (a TAEF2 weights folder)", _D),
    S("--generator", "model (img2img with the model's UNet) | none (decode the prototypes, no diffusion)", _S),
    S("--scheduler", "override the model's scheduler: pndm, ddim, ddpm, euler, dpm, lms", _S, unset="the model's"),
    S("--posterior", "VAE latent: sample (paper) | mean", _P),
    S("--size", "encode resolution: images are squashed to SIZE x SIZE before encoding (paper 512; a d4m "
      "generator's own size is in its d4m.json)", _P, "pixels", type=int),
    S("--kmeans", "online (the paper's one-pass mini-batch k-means) | full (k-means++ and Lloyd to convergence)", _P),
    S("--km-expand", "online mini-batch = KM_EXPAND x IPC latents", _P, "x IPC", type=int),
    S("--km-reassign", "online: move centres with under RATIO x the largest count onto random points, as "
      "scikit-learn's MiniBatchKMeans.partial_fit in the official code does (the flag alone: 0.01)",
      _P, "ratio", unset="off", type=float, nargs="?", const=0.01, metavar="RATIO"),
    S("--kmeans-iters", "full mode: at most this many Lloyd passes", _P, "passes", type=int),
    S("--prototype-dtype", "float32 | float16 storage of prototypes.safetensors", _P),
    S("--init", "prototypes (D4M) | noise (pure noise and the full schedule: Table 4 'w/o PT')", _S),
    S("--strength", "img2img noise strength in (0, 1] (paper 0.7)", _S, "fraction of the schedule", type=float),
    S("--guidance", "classifier-free guidance scale (paper 8; <= 1: none)", _S, "scale", type=float),
    S("--steps", "scheduler steps for strength 1 (paper 50: 35 denoising steps at 0.7)", _S, "steps", type=int),
    S("--prompt-template", "'{}' is replaced by the label text; '{}' alone reproduces the paper", _S),
    S("--negative-prompt", "text guidance steers away from ('' for a d4m-trained generator)", _S),
    S("--out-size", "output resolution; the dataset's: CIFAR 32, Tiny-ImageNet 64, ImageNet 224, folder: its first "
      "image's (the official code wrote 224)", _S, "pixels", unset="the dataset's", type=int),
    S("--seed", "every image's noise comes from a generator seeded by (seed, class, index)", _D, type=int),
    S("--device", "auto (CUDA when available) | cpu | cuda:0 ...", _D),
    S("--dtype", "auto | float32 | float16 | bfloat16 (auto: float16 on CUDA, float32 on CPU)", _D),
    S("--batch-size", "images denoised together (never changes the output)", _S, "images", type=int),
    S("--encode-batch-size", "images encoded together (never changes the output)", _P, "images", type=int),
    S("--workers", "data-loader worker processes", _D, "processes", type=int),
    S("--compile", "torch.compile the UNet (pays off on long GPU runs)", _S, action="store_true", default=None),
    S("--mode-guidance", "beyond the paper (after MGD3): pull each image's predicted clean latent this fraction of "
      "the way toward its prototype (0: off; needs a pndm, ddim, ddpm or dpm scheduler)", _S, "fraction",
      type=float, metavar="SCALE"),
    S("--mode-stop", "mode guidance acts on this first fraction of the denoising steps", _S, "fraction of the steps",
      type=float, metavar="FRACTION"),
    S("--candidates", "beyond the paper (after CaO2): draw M candidates per image (candidate 0 is the plain image) "
      "into RUN/candidates/ and keep the one --candidate-teacher scores best (1: no selection)", _S, "draws",
      type=int, metavar="M"),
    S("--candidate-teacher", "teacher that scores candidates: torchvision:NAME | cifar-resnet20:FILE | "
      "cifar-resnet56:FILE | checkpoint:FILE", _S, unset="none", metavar="SPEC"),
    S("--diversity", "candidate score = teacher probability of the class + DIVERSITY x smallest cosine distance "
      "(teacher features) to the images already kept for the class", _S, "weight", type=float),
    # sweep
    S("--run", "run with prototypes.safetensors", ("sweep",), required=True),
    S("--strength", "comma-separated list, e.g. 0.5,0.7,0.9", ("sweep",), "fractions", param="strengths",
      required=True),
    S("--batch-size", "synthesis batch", ("sweep",), "images", unset="the run's", type=int),
    S("--force", "overwrite a strength's folder made with another configuration", ("sweep",), action="store_true"),
)
