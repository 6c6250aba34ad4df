"""Every setting of the ``d4m`` commands, defined once: flag, meaning, unit, default, and the commands taking it.

Rendered into three places that therefore cannot drift: each command's ``--help`` (``add_flags``), the docstring of
the ``d4m`` function behind it (``documented``; ``help(d4m.distill)`` lists every setting) and README's settings
tables (``markdown_table``; ``python -m d4m.settings distill`` prints one, a test compares README with it).

The distillation commands take their defaults from ``d4m.config.DistillConfig`` and ``generator train`` from
``d4m.generator.train.TrainConfig`` (their flags default to "not given", so a preset or a YAML file can set them);
every other default is the ``default`` here, which the function's signature must repeat (a test checks it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

REQUIRED = "required"
FROM_RUN = "the run's config.yaml"  # synthesize: every setting not given keeps the value its --run recorded
CONFIG_COMMANDS = ("distill", "prototypes", "synthesize")
# command -> the public function of d4m.api behind it
FUNCTIONS = {"distill": "distill", "prototypes": "find_prototypes", "synthesize": "synthesize", "sweep": "sweep",
             "select": "select", "stm": "stm", "relabel": "relabel", "evaluate": "evaluate_run",
             "subset": "subset", "report": "make_report", "export": "export", "generator train": "train_generator",
             "generator sample": "sample_generator"}
_D = ("distill", "prototypes", "synthesize")
_P = ("distill", "prototypes")
_S = ("distill", "synthesize")
_RE = ("relabel", "evaluate")
GT, GS = "generator train", "generator sample"
PRESETS_HELP = "named paper setting (src/d4m/presets/*.yaml): cifar10-ipc10, cifar100-ipc50, imagenet-ipc10, ..."


@dataclass(frozen=True)
class Setting:
    flag: str
    meaning: str
    commands: tuple[str, ...]
    unit: str = ""
    kwargs: dict = field(default_factory=dict)  # argparse: type, action, default, required, choices, nargs, ...
    param: str | None = None  # the function's parameter, where its name is not the flag's
    aliases: tuple[str, ...] = ()  # older spellings of the flag, still accepted
    unset: str = ""  # what "not given" means, where the default is None (e.g. "all", "the dataset's")

    @property
    def name(self) -> str:
        return self.param or self.flag[2:].replace("-", "_")

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def S(flag, meaning, commands, unit="", param=None, aliases=(), unset="", **kwargs) -> Setting:  # noqa: N802
    return Setting(flag, meaning, tuple(commands), unit, kwargs, param, tuple(aliases), unset)


SETTINGS = (
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
    # select
    S("--method", "random | kcenter | herding | decode (= distill --generator none) | noise-init (= distill "
      "--init noise)", ("select",), required=True, choices=("random", "kcenter", "herding", "decode", "noise-init")),
    S("--data", "real training data KIND:PATH", ("select",), required=True),
    S("--ipc", "images per class", ("select",), "images", type=int),
    S("--out", "run directory", ("select",), required=True),
    S("--features", "kcenter / herding space: codec latents or teacher features", ("select",), default="codec",
      choices=("codec", "teacher")),
    S("--teacher", "teacher SPEC for --features teacher", ("select",)),
    S("--codec", "codec for --features codec and decode: model | vae:PATH | taef2 | taef2:DIR", ("select",)),
    S("--model", "diffusers model (codec model, noise-init)", ("select",)),
    S("--size", "encode resolution for codec features", ("select",), "pixels", type=int),
    S("--out-size", "output resolution", ("select",), "pixels", unset="the dataset's", type=int),
    S("--max-per-class", "candidates: a seeded subset of at most N images per class", ("select",), "images",
      unset="all", type=int),
    S("--seed", "seed of the random pick and of the candidate subset", ("select",), type=int),
    S("--config", "YAML config (decode / noise-init only)", ("select",)),
    S("--device", "auto | cpu | cuda:0 ...", ("select", "stm", "report", "export", GS), default="auto"),
    S("--workers", "data-loader workers for encoding", ("select",), "processes", type=int),
    S("--force", "overwrite a run made with another configuration", ("select", "stm"), action="store_true"),
    S("--strict", "a class folder of the data that holds no image is an error, not a warning", ("select",),
      action="store_true", default=None),
    # stm
    S("--run", "source run (its images/ are the starting point)", ("stm",), required=True),
    S("--teacher", "teacher SPEC with BatchNorm layers (e.g. cifar-resnet20:FILE)", ("stm",), required=True),
    S("--out", "new run directory", ("stm",), required=True),
    S("--iterations", "Adam steps per batch", ("stm",), "steps", type=int, default=300),
    S("--lr", "Adam learning rate on pixels in [0, 1]", ("stm",), "per step", type=float, default=0.05),
    S("--bn-weight", "weight of the BatchNorm-statistics loss", ("stm",), "weight", type=float, default=0.01),
    S("--batch-size", "images optimised together", ("stm",), "images", type=int, default=100),
    S("--seed", "seed of the optimisation", ("stm", "report"), type=int, default=0),
    S("--allow-incomplete", "start from a --run whose images do not match its manifest (a warning per problem)",
      ("stm",), action="store_true"),
    # relabel and evaluate
    S("--run", "a d4m run directory (uses RUN/images, writes under RUN/)", _RE),
    S("--images", "any ImageFolder of distilled images (results under --out)", _RE),
    S("--allow-incomplete", "use a --run whose images do not match its manifest (missing, extra or changed files), "
      "for inspection; without it such a run is refused", _RE + ("report", "export"), action="store_true"),
    S("--teacher", "torchvision:NAME | cifar-resnet20:FILE | cifar-resnet56:FILE | checkpoint:FILE", _RE,
      required=True),
    S("--recipe", "paper, locked, ddranking or a YAML file", _RE, default="paper"),
    S("--epochs", "override the recipe's epochs", _RE, "epochs", unset="the recipe's", type=int),
    S("--size", "image size", _RE, "pixels", unset="from --val: cifar 32, tiny 64, imagenet 224", type=int),
    S("--topk", "store only the top K logits (+ the mean of the rest); 0: all", _RE, "logits", type=int, default=0),
    S("--label-format", "full-logit storage precision", _RE, default="fp16", choices=("fp16", "fp32")),
    S("--device", "cpu, cuda, cuda:N or auto", _RE, default="auto"),
    S("--workers", "data-loading worker processes", _RE, "processes", type=int, default=0),
    S("--out", "output folder", _RE, unset="RUN/eval or DIR/../eval"),
    S("--strict", "a class folder that holds no image (distilled or real data) is an error, not a warning", _RE,
      action="store_true"),
    S("--val", "real data KIND:PATH, only to pick the default --size", ("relabel",)),
    S("--name", "label set name under labels/", ("relabel",), unset="TEACHER-RECIPE-FORMAT"),
    S("--student", "student architecture", ("evaluate",), default="convnet-w128"),
    S("--val", "real data KIND:PATH; its val split is the test set", ("evaluate",), required=True),
    S("--seeds", "independent students", ("evaluate",), "students", type=int, default=1),
    S("--labels", "stored: relabel once, replay; online: teacher inside the training loop; hard: cross-entropy on "
      "the class labels alone (results under RECIPE-hard)", ("evaluate",), default="stored",
      choices=("stored", "online", "hard")),
    S("--val-limit", "test on a seeded subset of this many val images", ("evaluate",), "images", unset="all",
      type=int),
    S("--card", "fair-evaluation card: also the random baseline and hard labels (2 x SEEDS more students); writes "
      "card.json / card.md", ("evaluate",), action="store_true"),
    S("--train-data", "card: real training data KIND:PATH for the random baseline", ("evaluate",),
      unset="the run's config.yaml data"),
    S("--full-data-acc", "card: top-1 % of hard-label training on the full real data, or 'auto' (the teacher "
      "measured on --val)", ("evaluate",), "%", unset="the teacher's recorded accuracy"),
    S("--micro-batch", "physical micro-batch of student training: memory only; the recipe's batch (e.g. 50) stays "
      "the batch, reached by gradient accumulation; 0: the recipe's batch in one pass (--batch-size: its older "
      "name)", ("evaluate",), "images", aliases=("--batch-size",), type=int, default=0),
    S("--eval-every", "val top-1 every N epochs and after the last (0: after the last only; at CIFAR-10 IPC 10 a "
      "pass over the test set costs about as much as 45 training epochs)", ("evaluate",), "epochs", type=int,
      default=0),
    # subset
    S("--run", "the ImageNet-1K d4m run", ("subset",), required=True),
    S("--classes", "tiny-imagenet:ROOT (its wnids.txt) or a file of wnids", ("subset",), required=True),
    S("--out", "the new run directory", ("subset",), required=True),
    S("--copy", "copy images instead of symlinking", ("subset",), action="store_true"),
    # report
    S("--run", "run directory (report goes to RUN/report/)", ("report",), required=True),
    S("--teacher", "teacher SPEC for the t-SNE panel (skipped without it)", ("report",)),
    S("--classes", "classes shown in the grid (t-SNE: at most 10)", ("report",), "classes", type=int, default=20),
    S("--per-class", "images per class in the grid", ("report",), "images", type=int, default=10),
    S("--real-per-class", "real images per class in the t-SNE", ("report",), "images", type=int, default=100),
    # export
    S("--run", "the run to export", ("export",), required=True),
    S("--to", "hf DIR (a Hugging Face dataset) or ddranking DIR", ("export",), param="to, out", required=True,
      nargs=2, metavar=("FORMAT", "DIR")),
    S("--teacher", "soft labels: the teacher's logits on each whole image (hf: soft_label column; ddranking: "
      "labels.pt)", ("export",)),
    S("--dataset", "ddranking: its dataset name (CIFAR10, CIFAR100, TinyImageNet, ImageNet1K)", ("export",),
      unset="from the run's --data"),
    S("--recipe", "ddranking: the d4m recipe its config.yaml carries", ("export",), default="paper"),
    S("--label-mode", "ddranking: soft_label_mode in config.yaml (M: its teachers relabel each batch; S: labels.pt)",
      ("export",), param="mode", default="M", choices=("M", "S")),
    S("--force", "replace an earlier export in DIR (a folder d4m did not make is never written into)", ("export",),
      action="store_true"),
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


def for_command(command: str) -> list[Setting]:
    return [s for s in SETTINGS if command in s.commands]


def default(setting: Setting, command: str):
    """The value a setting takes when not given: DistillConfig's / TrainConfig's for the commands built on them."""
    if command == "synthesize" and setting.dest not in ("out", "run", "force"):
        return FROM_RUN
    if command in CONFIG_COMMANDS + ("select",) and setting.dest not in ("out", "config", "preset", "run", "device"):
        from d4m.config import DistillConfig

        fields = {f.name: f for f in dataclasses.fields(DistillConfig)}
        if setting.dest in fields:
            return fields[setting.dest].default
    if command == GT:
        from d4m.generator.config import TrainConfig

        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        if setting.dest in fields and fields[setting.dest].default is not dataclasses.MISSING:
            return fields[setting.dest].default
    if setting.kwargs.get("required"):
        return REQUIRED
    if setting.kwargs.get("action") == "store_true":
        return False
    return setting.kwargs.get("default")


def _shown(value, setting: Setting | None = None) -> str:
    if value is None:
        return (setting.unset if setting is not None else "") or "none"
    if value is REQUIRED or value is FROM_RUN:
        return value
    if value is False:
        return "off"
    if value is True:
        return "on"
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def help_text(setting: Setting, command: str) -> str:
    """The ``--help`` line: meaning [unit] (default ...)."""
    unit = f" [{setting.unit}]" if setting.unit else ""
    value = default(setting, command)
    tail = "" if value is REQUIRED else f" (default: {_shown(value, setting)})"
    return (setting.meaning + unit + tail).replace("%", "%%")


def add_flags(parser, command: str) -> None:
    """Add every setting of ``command`` to an argparse parser."""
    for s in for_command(command):
        parser.add_argument(s.flag, *s.aliases, dest=s.dest, help=help_text(s, command), **s.kwargs)


def docstring_section(command: str) -> str:
    """The settings of ``command`` as a docstring section (name: meaning [unit]; default)."""
    lines = [f"Settings (the flags of ``d4m {command}``, spelled with ``_``):", ""]
    for s in for_command(command):
        unit = f" [{s.unit}]" if s.unit else ""
        value = default(s, command)
        lines.append(f"    {s.name} ({s.flag}): {s.meaning}{unit}. Default: {_shown(value, s)}.")
    return "\n".join(lines)


def documented(command: str):
    """Decorator: append ``command``'s settings to the function's docstring (rendered on first ``help()``)."""
    def wrap(fn):
        fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\n    " + docstring_section(command).replace("\n", "\n    ")
        fn.__d4m_command__ = command
        return fn
    return wrap


def markdown_table(command: str) -> str:
    """README's table of ``command``'s settings: | flag | meaning | unit | default |."""
    rows = ["| flag | meaning | unit | default |", "|---|---|---|---|"]
    for s in for_command(command):
        meaning = s.meaning.replace("|", "\\|")
        rows.append(f"| `{s.flag}` | {meaning} | {s.unit} | {_shown(default(s, command), s)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(markdown_table(" ".join(sys.argv[1:]) or "distill"))
