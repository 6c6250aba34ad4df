"""The student training loop (TTM): soft-label KL on the stream's batches, AdamW, cosine per epoch.

Readable on purpose, nanoGPT-style: one function, one pass per epoch, one optimizer step per stream batch, the
batch split into micro-batches (gradient accumulation) when the physical batch is smaller than the recipe's.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from d4m.labels import StreamImages, iterate_epoch, kl_soft_loss, mixed_ce_loss
from d4m.runio import StageTimer, atomic_write_text
from d4m.seeding import derive_seed
from d4m.train.checkpoint import load_training_state, save_training_state
from d4m.train.recipe import Recipe


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: weight decay on weight matrices and conv kernels only, none on biases and norms."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and conv kernels only; none on biases and norm parameters."""
    groups = decay_groups(model, recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    if recipe.optimizer == "adam":  # L2 decay through Adam's gradient, as torch.optim.Adam does
        return torch.optim.Adam(groups, lr=recipe.lr)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum)


def lr_at(recipe: Recipe, epoch: int) -> float:
    """Learning rate for ``epoch`` (0-based): cosine from lr to 0 over the recipe's epochs, stepped per epoch.

    ``half-cosine`` is DD-Ranking's 'cosine' (a LambdaLR of 0.5 (1 + cos(pi e / (2 E)))): half a period, lr to lr / 2.
    """
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "half-cosine":
        return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * epoch / recipe.epochs / 2))
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * epoch / recipe.epochs))


def train_student(model: nn.Module, data: StreamImages, targets: torch.Tensor, labels: Callable | None,
                  recipe: Recipe, out_dir: Path | None = None, seed: int = 0, device: str = "cpu",
                  physical_batch: int = 0, workers: int = 0, evaluate: Callable[[nn.Module], float] | None = None,
                  eval_every: int = 0, log_path: Path | None = None, stop_after: int | None = None,
                  desc: str = "train") -> dict:
    """Train ``model`` (taking images in [0, 1]) for ``recipe.epochs``; return the metrics dict.

    ``labels(epoch, batch)`` gives the teacher logits of a stream batch (stored or online); ``labels=None`` trains
    on hard labels alone (cross-entropy, mixed like the batch), which needs ``recipe.hard_label_weight > 0``.
    With ``out_dir`` a checkpoint is written after every epoch and the run resumes from it. ``stop_after`` ends
    early after that many epochs in this call (for resume tests).
    """
    if labels is None and not recipe.hard_label_weight:
        raise ValueError("hard-label training (labels=None) needs recipe.hard_label_weight > 0")
    model.to(device)
    optimizer = make_optimizer(model, recipe)
    info = {"recipe": recipe.to_dict(), "seed": int(seed), "num_images": len(data)}
    ckpt = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    start, history = 0, []
    if ckpt is not None and ckpt.is_file():
        start, history = load_training_state(ckpt, model, optimizer, info)
    targets = torch.as_tensor(targets, dtype=torch.long)
    micro = physical_batch if physical_batch and physical_batch > 0 else data.spec.batch_size
    end = recipe.epochs if stop_after is None else min(recipe.epochs, start + stop_after)
    bar = tqdm(range(start, end), desc=desc, unit="epoch", initial=start, total=recipe.epochs)
    with StageTimer(log_path, f"{desc}", unit="image_epochs", seed=seed, recipe=recipe.name) as timer:
        for epoch in bar:
            torch.manual_seed(derive_seed(seed, "train", epoch))  # dropout etc.: same on resume
            for group in optimizer.param_groups:
                group["lr"] = lr_at(recipe, epoch)
            model.train()
            t0, total, seen = time.perf_counter(), 0.0, 0
            for batch in iterate_epoch(data, epoch, workers):
                teacher_logits = labels(epoch, batch).to(device) if labels is not None else None
                x = batch.images.to(device)
                y = targets[batch.indices].to(device)
                partners = y[torch.tensor(batch.mix.perm, dtype=torch.long, device=device)]
                optimizer.zero_grad(set_to_none=True)
                for s in range(0, len(x), micro):
                    sl = slice(s, s + micro)
                    out = model(x[sl])
                    loss = kl_soft_loss(out, teacher_logits[sl], recipe.temperature) if labels is not None else 0.0
                    if recipe.hard_label_weight:
                        loss = loss + recipe.hard_label_weight * mixed_ce_loss(out, y[sl], partners[sl], batch.mix.lam)
                    (loss * (out.shape[0] / len(x))).backward()
                    total += float(loss.detach()) * out.shape[0]
                optimizer.step()
                seen += len(x)
            record = {"epoch": epoch + 1, "lr": lr_at(recipe, epoch), "train_loss": total / max(1, seen),
                      "epoch_s": round(time.perf_counter() - t0, 3)}
            if evaluate is not None and ((eval_every and (epoch + 1) % eval_every == 0) or epoch + 1 == recipe.epochs):
                record["val_top1"] = evaluate(model)
                model.train()
            history.append(record)
            timer.items += seen
            shown = [h["val_top1"] for h in history if "val_top1" in h]
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", top1=shown[-1] if shown else "-")
            if ckpt is not None:
                save_training_state(ckpt, model, optimizer, epoch + 1, history, info)
                atomic_write_text(Path(out_dir) / "metrics.json", json.dumps(summarise(history, recipe), indent=2))
    return summarise(history, recipe)


def summarise(history: list, recipe: Recipe) -> dict:
    evals = [h for h in history if "val_top1" in h]
    best = max(evals, key=lambda h: h["val_top1"]) if evals else None
    done = history[-1]["epoch"] if history else 0
    return {"epochs_done": done, "epochs": recipe.epochs, "complete": done == recipe.epochs,
            "last_top1": evals[-1]["val_top1"] if evals and evals[-1]["epoch"] == done else None,
            "best_top1": best["val_top1"] if best else None, "best_epoch": best["epoch"] if best else None,
            "history": history}
