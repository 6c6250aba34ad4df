"""The teacher trainer's defaults and its verdict, as pure functions (``d4m teacher train``).

Defaults (issue 25: the old ones, SGD lr 0.05 stepped per epoch with no warm-up, left a model predicting one class
on a 10-class folder): convolutional nets get SGD (nesterov, momentum 0.9, lr 0.05, weight decay 5e-4), except
``convnet-w128`` (no batch norm, a linear head over every position's features, so its gradients grow with the image
size) which gets the DC/DM code's lr 0.01; transformers (``swin_t``, ``vit_b_16``) get AdamW (lr 1e-3, weight
decay 0.05). Both warm up linearly over the first ``warmup`` epochs (default: a tenth of the run, at most 5 epochs),
then follow a cosine to zero, stepped per batch; cross-entropy with label smoothing 0.1; no weight decay on biases and norm parameters; gradients clipped to norm 5.

The verdict: a teacher is *weak* (at chance level) when its top-1 is below 1.5 x chance (chance = 100 / classes,
in percent) or when one class takes more than max(50%, 3 / classes) of its predictions. A weak teacher is not saved
unless the caller allows it (``allow_weak``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from d4m.checks import finite
from d4m.errors import ConfigError

TRANSFORMERS = ("swin_t", "vit_b_16")
OPTIMIZERS = ("auto", "sgd", "adamw")
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}
ARCH_SGD_LR = {"convnet-w128": 0.01}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}
CLIP_NORM = 5.0
WEAK_FACTOR = 1.5  # top-1 below this many times chance: weak


@dataclass(frozen=True)
class TeacherRecipe:
    optimizer: str
    lr: float
    weight_decay: float
    warmup: float  # epochs of linear warm-up (fractional allowed)
    label_smoothing: float
    epochs: int
    clip_norm: float = CLIP_NORM

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_recipe(arch: str, epochs: int, optimizer: str = "auto", lr: float | None = None,
                   weight_decay: float | None = None, warmup: float | None = None,
                   label_smoothing: float = 0.1) -> TeacherRecipe:
    """The recipe for ``arch``; None / 'auto' fields take the architecture's default (module docstring)."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"--optimizer {optimizer!r}: one of {', '.join(OPTIMIZERS)}")
    if optimizer == "auto":
        optimizer = "adamw" if arch in TRANSFORMERS else "sgd"
    if lr is None:
        lr = ARCH_SGD_LR.get(arch, DEFAULT_LR["sgd"]) if optimizer == "sgd" else DEFAULT_LR[optimizer]
    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay
    warmup = min(5.0, epochs / 10) if warmup is None else warmup
    finite("--lr", lr, 0.0, low_open=True)
    finite("--weight-decay", weight_decay, 0.0)
    finite("--warmup", warmup, 0.0, float(epochs))
    finite("--label-smoothing", label_smoothing, 0.0, 0.99)
    return TeacherRecipe(optimizer, float(lr), float(weight_decay), float(warmup), float(label_smoothing), epochs)


def lr_at_step(recipe: TeacherRecipe, step: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine to zero."""
    total = recipe.epochs * steps_per_epoch
    warm = round(recipe.warmup * steps_per_epoch)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_teacher_optimizer(model: nn.Module, recipe: TeacherRecipe) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and kernels only, none on biases and norm parameters."""
    from d4m.train.loop import decay_groups

    groups = decay_groups(model, recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)


def prediction_stats(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> dict:
    """Top-1 (%), the share (%) of the most predicted class and that class's index, from predicted indices."""
    n = max(1, len(targets))
    counts = torch.bincount(predictions.long(), minlength=num_classes)
    return {"top1": round(100.0 * float((predictions == targets).sum()) / n, 2),
            "top_class_share": round(100.0 * float(counts.max()) / n, 2), "top_class": int(counts.argmax())}


def weak_reason(top1: float, top_class_share: float, num_classes: int) -> str | None:
    """Why a teacher with these numbers (percent) is at chance level, or None when it is not."""
    chance = 100.0 / num_classes
    if top1 < WEAK_FACTOR * chance:
        return f"top-1 {top1:.2f}% is below {WEAK_FACTOR} x chance ({WEAK_FACTOR * chance:.2f}%)"
    if top_class_share > max(50.0, 300.0 / num_classes):
        return f"one class takes {top_class_share:.1f}% of its predictions"
    return None
