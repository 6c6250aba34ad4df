"""``d4m teacher train``: a plain supervised classifier on real data, saved as a d4m checkpoint (safetensors).

Every epoch prints its training loss and top-1 and its validation top-1 (percent) and keeps them in the checkpoint's
record (``history``); a run that ends at chance level (``d4m.train.teacher_recipe.weak_reason``) is refused with a
loud warning (``WeakTeacher``) unless ``allow_weak``. The defaults are in ``d4m.train.teacher_recipe``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from tqdm import tqdm

from d4m.checks import at_most, finite, whole
from d4m.data import DataSpec, open_dataset
from d4m.errors import ConfigError, D4MError, WeakTeacher
from d4m.models import Normalized, create_model, save_checkpoint
from d4m.runio import StageTimer
from d4m.seeding import derive_seed
from d4m.train.bounds import MAX_BATCH, model_fits, training_batch, val_batch
from d4m.train.checkpoint import load_training_state, save_training_state
from d4m.train.teacher_recipe import (TeacherRecipe, lr_at_step, make_teacher_optimizer, prediction_stats,
                                      weak_reason)


def train_transform(size: int):
    """Small images: RandomCrop with padding size/8 + flip; larger: RandomResizedCrop + flip."""
    if size <= 64:
        crop = [v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.RandomCrop(size, padding=size // 8)]
    else:
        crop = [v2.RandomResizedCrop(size, antialias=True)]
    return v2.Compose([v2.PILToTensor(), *crop, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


def holdout_split(targets: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: a seeded ``fraction`` of each class (at least one image of a class with two or
    more) is held out for validation."""
    g = torch.Generator().manual_seed(derive_seed(seed, "teacher-holdout"))
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    held: list[int] = []
    for idx in by_class.values():
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if fraction > 0 else 0
        held += [idx[j] for j in torch.randperm(len(idx), generator=g)[:k].tolist()]
    chosen = set(held)
    return [i for i in range(len(targets)) if i not in chosen], sorted(held)


def check_teacher_out(out: Path) -> None:
    """``--out`` is a new file or a checkpoint ``d4m teacher train`` wrote, outside any d4m folder (a run's
    ``prototypes.safetensors``, a generator's weights): nothing else is ever replaced."""
    from d4m.models.teachers import read_checkpoint
    from d4m.runio.rundir import enclosing_folder

    found = enclosing_folder(out)
    if found is not None:
        raise ConfigError(f"--out {out}: lies inside the d4m {found[0]} folder {found[1]}; choose a file outside it")
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise ConfigError(f"--out {out}: exists and is not a plain file; choose a new file")
    if out.exists():
        try:
            meta = read_checkpoint(out)[1]
        except D4MError:
            meta = {}
        if not {"arch", "classes", "train_images"} <= set(meta):
            raise ConfigError(f"--out {out}: exists and is not a checkpoint `d4m teacher train` wrote; choose a "
                              "new file")


def open_val(data: str, val: str | None, holdout: float, size: int, train, seed: int, workers: int,
             strict: bool = False):
    """(ValSet or None, its description, training indices) for the run's validation."""
    from d4m.evaluate.val import ValSet

    indices = list(range(len(train)))
    if val is None and DataSpec.parse(data).kind != "folder":
        val = data
    if val is not None:
        valset = ValSet(val, size, workers=workers, strict=strict)
        if valset.classes != train.classes:
            raise ConfigError(f"--val {val}: its classes {valset.classes[:3]}... differ from the training data's "
                              f"{train.classes[:3]}...")
        return valset, f"{val} ({len(valset)} images)", indices
    if holdout <= 0:
        return None, None, indices
    indices, held = holdout_split(train.targets, holdout, seed)
    valset = ValSet(data, size, workers=workers, indices=held)
    return valset, f"{len(held)} images held out of {data} (--holdout {holdout:g})", indices


def train_teacher(data: str, arch: str, out: Path, size: int, recipe: TeacherRecipe, batch_size: int = 128,
                  device: str = "cpu", workers: int = 0, limit: int | None = None, seed: int = 0,
                  log_path: Path | None = None, val: str | None = None, holdout: float = 0.1,
                  allow_weak: bool = False, strict: bool = False) -> dict:
    """Train ``arch`` with hard labels under ``recipe``; save it at ``out``; return its record (percentages).

    Validation: ``val`` (a dataset spec), else the data's val split, else (``folder:``) a seeded ``holdout``
    fraction of each class. The training state is saved after every epoch next to ``out`` (``<out>.train.pt``); a
    rerun resumes from it, and because each epoch's shuffle and augmentation are seeded by (seed, epoch) the result
    is the same as an uninterrupted run. A weak (chance-level) result raises ``WeakTeacher`` and keeps only the
    training state, unless ``allow_weak``. ``strict``: a class folder without images is an error, not a warning.
    """
    at_most("--batch-size", batch_size, MAX_BATCH)
    whole("--workers", workers, 0)
    whole("--limit", limit, 1, optional=True)
    finite("--holdout", holdout, 0.0, 0.5)
    check_teacher_out(Path(out))
    train = open_dataset(data, "train", transform=train_transform(size), strict=strict)
    model_fits(f"--arch {arch}", arch, len(train.classes), size, "the teacher", device)
    batch = min(batch_size, len(train))
    training_batch(f"--batch-size {batch_size}", batch, batch, size, device)
    val_batch(f"--size {size}", size, device)
    valset, val_desc, indices = open_val(data, val, holdout, size, train, seed, workers, strict)
    if limit and limit < len(indices):
        g = torch.Generator().manual_seed(derive_seed(seed, "teacher-subset"))
        indices = [indices[i] for i in torch.randperm(len(indices), generator=g)[:limit].tolist()]
    classes = len(train.classes)
    torch.manual_seed(derive_seed(seed, "teacher"))
    model = Normalized(create_model(arch, classes, size)).to(device)
    opt = make_teacher_optimizer(model, recipe)
    state_path = Path(str(out) + ".train.pt")
    info = {"arch": arch, "data": data, "size": size, "batch_size": batch_size, "recipe": recipe.to_dict(),
            "seed": seed, "limit": limit, "val": val_desc}
    start, history = (load_training_state(state_path, model, opt, info) if state_path.is_file() else (0, []))
    order = torch.Generator()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, indices), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=len(indices) > batch_size,
                                         generator=order)
    steps = len(loader)
    tqdm.write(f"teacher {arch}: {len(indices)} training images, {classes} classes, {size} px, {steps} batches "
               f"per epoch; validation: {val_desc or 'none (training top-1 judges the result)'}", file=sys.stderr)
    bar = tqdm(total=recipe.epochs * steps, initial=start * steps, unit="batch", desc=f"teacher {arch}")
    with StageTimer(log_path, "teacher-train", unit="image_epochs", arch=arch, data=data) as timer:
        for epoch in range(start, recipe.epochs):
            if history and history[-1].get("diverged"):
                break
            bar.set_description(f"teacher {arch} epoch {epoch + 1}/{recipe.epochs}")
            record = _epoch(model, opt, loader, recipe, epoch, seed, device, order, bar, classes)
            timer.items += record.pop("images")
            if valset is not None:
                preds = valset.predict(model, device, desc="val")
                stats = prediction_stats(preds, valset.targets, classes)
                record.update(val_top1=stats["top1"], val_top_class_share=stats["top_class_share"])
            history.append(record)
            tqdm.write(_epoch_line(record, recipe.epochs), file=sys.stderr)
            save_training_state(state_path, model, opt, epoch + 1, history, info)
    bar.close()
    return _finish(model, arch, train, size, recipe, history, valset, val_desc, indices, data, out, state_path,
                   allow_weak)


def _epoch(model, opt, loader, recipe: TeacherRecipe, epoch: int, seed: int, device: str, order, bar,
           classes: int) -> dict:
    order.manual_seed(derive_seed(seed, "teacher-order", epoch))
    torch.manual_seed(derive_seed(seed, "teacher-augment", epoch))
    model.train()
    t0, total, correct, seen, steps = time.perf_counter(), 0.0, 0, 0, len(loader)
    predicted = torch.zeros(classes, dtype=torch.long)
    lr = recipe.lr
    for b, (x, y) in enumerate(loader):
        lr = lr_at_step(recipe, epoch * steps + b, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        value = float(loss.detach())
        if not math.isfinite(value):
            bar.update(steps - b)
            return {"epoch": epoch + 1, "lr": lr, "diverged": f"training loss became {value} in epoch {epoch + 1}, "
                    f"batch {b + 1}", "images": seen, "epoch_s": round(time.perf_counter() - t0, 3)}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
        opt.step()
        pred = logits.detach().argmax(1)
        total += value * len(y)
        correct += int((pred == y).sum())
        predicted += torch.bincount(pred.cpu(), minlength=classes)
        seen += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{total / seen:.3f}", top1=f"{100.0 * correct / seen:.1f}%", lr=f"{lr:.2g}")
    return {"epoch": epoch + 1, "lr": lr, "train_loss": round(total / max(1, seen), 4),
            "train_top1": round(100.0 * correct / max(1, seen), 2),
            "train_top_class_share": round(100.0 * int(predicted.max()) / max(1, seen), 2), "images": seen,
            "epoch_s": round(time.perf_counter() - t0, 3)}


def _epoch_line(record: dict, epochs: int) -> str:
    if "diverged" in record:
        return f"epoch {record['epoch']}/{epochs}: {record['diverged']}; training stopped"
    val = f", val top-1 {record['val_top1']:.2f}%" if "val_top1" in record else ""
    return (f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, train top-1 "
            f"{record['train_top1']:.2f}%{val} ({record['epoch_s']:.1f} s)")


def _finish(model, arch, train, size, recipe, history, valset, val_desc, indices, data, out, state_path,
            allow_weak) -> dict:
    last = history[-1] if history else {}
    classes = len(train.classes)
    if "diverged" in last:
        reason = last["diverged"]
    elif "val_top1" in last:
        reason = weak_reason(last["val_top1"], last["val_top_class_share"], classes)
    else:
        reason = weak_reason(last.get("train_top1", 0.0), last.get("train_top_class_share", 100.0), classes)
    record = {"arch": arch, "classes": classes, "image_size": size, "val_top1": last.get("val_top1"),
              "train_top1": last.get("train_top1"), "val": val_desc, "weak": reason, "recipe": recipe.to_dict(),
              "history": history}
    if reason:
        banner = "!" * 100
        tqdm.write(f"{banner}\nWARNING: teacher {arch} on {data} did not learn (chance level): {reason}.\n"
                   f"  Try a lower --lr, more --epochs or more data; see its per-epoch history above.\n{banner}",
                   file=sys.stderr)
        if not allow_weak:
            raise WeakTeacher(f"{out}: not written, the teacher did not learn ({reason}); its training state "
                              f"is kept in {state_path}; pass --allow-weak (allow_weak=True) to save it anyway")
    save_checkpoint(Path(out), model.net, arch, train.classes, size, val_top1=last.get("val_top1"), data=data,
                    train_images=len(indices), epochs=recipe.epochs, val=val_desc, weak=reason,
                    recipe=recipe.to_dict(), history=history)
    state_path.unlink(missing_ok=True)
    return record
