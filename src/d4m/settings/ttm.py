"""Settings of relabel, evaluate, teacher train, teacher eval and subset."""

from __future__ import annotations

from d4m.settings.base import _RE, TE, TT, S

TTM = (
    # relabel and evaluate
    S("--run", "a d4m run directory (uses RUN/images, writes under RUN/)", _RE),
    S("--images", "any ImageFolder of distilled images (results under --out)", _RE),
    S("--allow-incomplete", "use a --run whose images do not match its manifest (missing, extra or changed files), "
      "for inspection; without it such a run is refused", _RE + ("report", "export"), action="store_true"),
    S("--teacher", "torchvision:NAME | cifar-resnet20:FILE | cifar-resnet56:FILE | checkpoint:FILE", _RE,
      required=True),
    S("--recipe", "paper, locked, converged (locked at 1,000 epochs), ddranking or a YAML file", _RE, default="paper"),
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
    # teacher train (d4m.train.teacher_recipe: the defaults that depend on the architecture)
    S("--data", "real training data KIND:PATH", (TT,), required=True),
    S("--out", "output .safetensors file (load it as checkpoint:FILE)", (TT,), required=True),
    S("--arch", "architecture (d4m.models.MODELS)", (TT,), default="convnet-w128"),
    S("--epochs", "passes over the training data", (TT,), "epochs", type=int, default=30),
    S("--batch-size", "images per optimisation step", (TT,), "images", type=int, default=128),
    S("--lr", "peak learning rate", (TT,), "per step", unset="0.05 for sgd, 0.01 for convnet-w128, 1e-3 for adamw",
      type=float),
    S("--optimizer", "auto: adamw for swin_t and vit_b_16, sgd (nesterov, momentum 0.9) otherwise", (TT,),
      default="auto", choices=("auto", "sgd", "adamw")),
    S("--weight-decay", "weight decay", (TT,), unset="5e-4 for sgd, 0.05 for adamw", type=float),
    S("--warmup", "linear learning-rate warm-up before the cosine", (TT,), "epochs",
      unset="a tenth of --epochs, at most 5", type=float),
    S("--label-smoothing", "cross-entropy label smoothing", (TT,), "fraction", type=float, default=0.1),
    S("--size", "image size", (TT,), "pixels", unset="the data's", type=int),
    S("--limit", "train on a seeded subset of this many images", (TT,), "images", unset="all", type=int),
    S("--val", "validation data KIND:PATH", (TT,), unset="the data's val split; folder: --holdout"),
    S("--holdout", "folder data without --val: this fraction of each class is held out for validation (0: none, the "
      "training top-1 judges)", (TT,), "fraction", type=float, default=0.1),
    S("--allow-weak", "save the teacher even when it is at chance level (val top-1 below 1.5 x chance, or one class "
      "taking most predictions); otherwise exit 2", (TT,), action="store_true"),
    S("--strict", "a class folder that holds no image is an error, not a warning", (TT, TE), action="store_true"),
    S("--seed", "seed of the initial weights, the subset and the data order", (TT,), type=int, default=0),
    S("--device", "auto | cpu | cuda:0 ...", (TT, TE), default="auto"),
    S("--workers", "data-loader worker processes", (TT, TE), "processes", type=int, default=0),
    # teacher eval
    S("--teacher", "torchvision:NAME | cifar-resnet20:FILE | cifar-resnet56:FILE | checkpoint:FILE", (TE,),
      required=True),
    S("--val", "real data KIND:PATH (folder:PATH uses all its images)", (TE,), required=True),
    S("--limit", "a seeded subset of this many images", (TE,), "images", unset="all", type=int),
    S("--size", "input size", (TE,), "pixels", unset="the data's; folder: the teacher's", type=int),
    S("--batch-size", "images per forward pass", (TE,), "images", type=int, default=256),
    S("--log", "append the timing to this log.jsonl", (TE,)),
)
