"""Settings of the baseline methods: select and stm."""

from __future__ import annotations

from d4m.settings.base import GS, S

METHODS = (
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
)
