"""``d4m export --to ddranking OUT``: a run in the form DD-Ranking (NUS-HPC-AI-Lab/DD-Ranking) evaluates.

What DD-Ranking reads, checked against its code (``ddranking/metrics/soft_label.py``, ``ddranking/utils/data.py``,
``ddranking/config/user_config.py`` and the per-method configs of its ``eval`` branch, e.g. ``D4M/CIFAR10/IPC10.yaml``):

- ``compute_metrics(image_path=DIR)`` opens ``torchvision.datasets.ImageFolder(DIR)``: class = sorted folder name,
  so the folders are zero-padded class indices (``00000``, ``00001``, ... as its own random-data folders), and the
  hard labels it builds are ``[c] * ipc`` for every class: exactly IPC images per class. -> ``OUT/images/``
- ``compute_metrics(image_tensor=...)`` takes ``[classes x IPC, 3, H, W]`` float, class-major, already normalised
  with the dataset's mean/std (its ``get_dataset`` values). -> ``OUT/images.pt``
- ``soft_label_mode: S`` needs ``soft_labels`` ``[classes x IPC, classes]`` in the same order; its KL loss applies
  the temperature to them, so they are logits. -> ``OUT/labels.pt`` (the teacher's logits on the whole image)
- ``syn_lr`` (its demos load ``lr.pt``) fixes the student's learning rate; without it, it searches 5 values.
  -> ``OUT/lr.pt`` (d4m's recipe learning rate)
- ``Config.from_file`` reads a flat YAML mapping (its ``LabelRobustScoreSoft`` keys). -> ``OUT/config.yaml``
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import torch
import yaml
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from d4m.data import DataSpec
from d4m.errors import ConfigError
from d4m.evaluate.run import open_images
from d4m.runio.verify import read_run
from d4m.models import IMAGENET_MEAN, IMAGENET_STD
from d4m.runio import StageTimer, atomic_write_text
from d4m.runio.atomic import atomic_torch_save
from d4m.runio.rundir import RunDir

# ddranking/utils/data.py get_dataset: the normalisation of each dataset it knows (CIFAR-100 uses CIFAR-10's values)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
DATASETS = {"CIFAR10": (CIFAR_MEAN, CIFAR_STD), "CIFAR100": (CIFAR_MEAN, CIFAR_STD),
            "TinyImageNet": (IMAGENET_MEAN, IMAGENET_STD), "ImageNet1K": (IMAGENET_MEAN, IMAGENET_STD)}
FROM_KIND = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "tiny-imagenet": "TinyImageNet", "imagenet": "ImageNet1K"}
# the agent model of DD-Ranking's D4M configs: ConvNet-3 on CIFAR, ResNet-18-BN (torchvision) on the larger sets
AGENT = {"CIFAR10": ("ConvNet-3", False), "CIFAR100": ("ConvNet-3", False), "TinyImageNet": ("ResNet-18-BN", True),
         "ImageNet1K": ("ResNet-18-BN", True)}
# d4m's schedules as DD-Ranking's get_lr_scheduler names them: its 'cosineannealing' (CosineAnnealingLR) goes to 0
# like d4m's 'cosine'; its 'cosine' is half a cosine period (to lr / 2), d4m's 'half-cosine'; constant = a step
# scheduler whose first step lies past the last epoch
SCHEDULES = {"cosine": "cosineannealing", "half-cosine": "cosine", "constant": "step"}


def ddranking_dataset(cfg: dict, given: str | None) -> str:
    """DD-Ranking's name of the run's dataset: ``given`` (--dataset) or the kind of the run's --data."""
    if given is not None:
        if given not in DATASETS:
            raise ConfigError(f"--dataset {given!r}: DD-Ranking knows {', '.join(DATASETS)}")
        return given
    data = cfg.get("data")
    kind = DataSpec.parse(data).kind if isinstance(data, str) and ":" in data else None
    if kind not in FROM_KIND:
        raise ConfigError(f"--to ddranking: the run's data {data!r} is not a dataset DD-Ranking knows; "
                          f"give --dataset ({', '.join(DATASETS)})")
    return FROM_KIND[kind]


def class_major(targets: list[int]) -> tuple[list[int], int]:
    """Indices of the images class by class (in folder order), and IPC; ConfigError unless every class has IPC."""
    counts = Counter(targets)
    if len(set(counts.values())) != 1:
        few, many = min(counts.values()), max(counts.values())
        raise ConfigError(f"--to ddranking: classes have {few} to {many} images; DD-Ranking needs the same IPC "
                          "for every class")
    order = sorted(range(len(targets)), key=lambda i: (targets[i], i))
    return order, next(iter(counts.values()))


def ddranking_config(dataset: str, ipc: int, size: tuple[int, int], recipe, mode: str, batch: int) -> dict:
    """A ``LabelRobustScoreSoft`` config (keys as DD-Ranking's D4M configs) carrying d4m's recipe."""
    mean, std = DATASETS[dataset]
    model, torchvision = AGENT[dataset]
    norm = {"name": "Normalize", "args": {"mean": list(mean), "std": list(std)}}
    train = [{"name": "RandomResizedCrop", "args": {"size": size[0], "scale": list(recipe.scale)}}]
    if recipe.flip:
        train.append({"name": "RandomHorizontalFlip", "args": {"p": 0.5}})
    aug = {"cutmix": ("cutmix", {"beta": recipe.mix_alpha}), "mixup": ("mixup", {"lambda": recipe.mix_alpha}),
           "none": ("none", {})}[recipe.mix]
    return {
        "dataset": dataset, "real_data_path": "./dataset/", "ipc": ipc, "im_size": list(size),
        "model_name": model, "stu_use_torchvision": torchvision, "tea_use_torchvision": torchvision,
        "teacher_dir": "./teacher_models", "teacher_model_names": [model],
        "data_aug_func": aug[0], "aug_params": aug[1], "use_zca": False,
        "custom_train_trans": train + [{"name": "ToTensor"}, norm], "custom_val_trans": None,
        "use_aug_for_hard": False, "soft_label_mode": mode, "soft_label_criterion": "kl",
        "loss_fn_kwargs": {"temperature": float(recipe.temperature), "scale_loss": False},
        "optimizer": recipe.optimizer, "lr_scheduler": SCHEDULES[recipe.schedule],
        "step_size": recipe.epochs + 1 if recipe.schedule == "constant" else None,
        "weight_decay": float(recipe.weight_decay), "momentum": float(recipe.momentum), "num_eval": 5,
        "num_epochs": int(recipe.epochs), "num_workers": 4, "device": "cuda", "dist": False,
        "eval_full_data": dataset in ("CIFAR10", "CIFAR100"), "syn_batch_size": int(batch),
        "real_batch_size": 256, "save_path": f"./results/{dataset}/ipc{ipc}/d4m.csv",
        "random_data_format": "image", "random_data_path": f"./random_data/{dataset}/ipc{ipc}/",
    }


def _header(run, recipe, teacher) -> str:
    return (f"# DD-Ranking LabelRobustScoreSoft config written by `d4m export --to ddranking` from {run}.\n"
            f"# d4m recipe {recipe.name!r}: {recipe.epochs} epochs, batch {recipe.batch_size}, {recipe.optimizer} "
            f"lr {recipe.lr} (in lr.pt: pass it as syn_lr), KL at T = {recipe.temperature}.\n"
            "# soft_label_mode M: DD-Ranking's teachers (teacher_dir) relabel every augmented batch, as d4m's TTM does;\n"
            "# mode S uses labels.pt (" + (f"logits of {teacher}" if teacher else "not written: no --teacher") +
            ") with images.pt and no per-epoch relabelling.\n")


@torch.no_grad()
def export_ddranking(run_path, out: str | Path, teacher: str | None = None, device: str = "cpu",
                     force: bool = False, dataset: str | None = None, recipe: str = "paper",
                     mode: str = "M", batch_size: int = 256, allow_incomplete: bool = False) -> tuple[Path, int]:
    """Write ``OUT/{images/, images.pt, labels.pt, lr.pt, config.yaml}`` for DD-Ranking; return (OUT, images).

    Example::

        export_ddranking("runs/c10-ipc10", "exports/c10", teacher="cifar-resnet20:resnet20.th")
        # then, in DD-Ranking: torch.load("exports/c10/images.pt"), Config.from_file("exports/c10/config.yaml")
    """
    from d4m.models import load_teacher
    from d4m.train import load_recipe

    if mode not in ("M", "S"):
        raise ConfigError(f"--label-mode {mode!r}: DD-Ranking's soft-label modes are M and S")
    if mode == "S" and not teacher:
        raise ConfigError("--to ddranking with soft_label_mode S needs --teacher (labels.pt)")
    run, cfg, _ = read_run(run_path, allow_incomplete)
    name = ddranking_dataset(cfg, dataset)
    rec = load_recipe(recipe)
    out = Path(out).expanduser()
    target = RunDir(out, "export")
    target.claim_output("--to ddranking", force)  # a folder d4m did not make is refused whatever the flags
    images = open_images(run.images)
    order, ipc = class_major(images.targets)
    net = load_teacher(teacher, classes=images.classes, data="the distilled images").to(device) if teacher else None
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in DATASETS[name])
    out.mkdir(parents=True, exist_ok=True)
    folder = out / "images"
    if folder.exists():
        shutil.rmtree(folder)
    width = max(5, len(str(max(len(images.classes), ipc) - 1)))
    tensors, logits, shape = [], [], None
    with StageTimer(run.log, "export-ddranking", unit="images", to=str(out)) as timer:
        for s in tqdm(range(0, len(order), batch_size), desc="export ddranking", unit="batch"):
            batch = []
            for p, i in enumerate(order[s:s + batch_size], start=s):
                src = Path(images.describe(i))
                cls, k = images.targets[i], p % ipc
                dst = folder / f"{cls:0{width}d}" / f"{k:0{width}d}{src.suffix.lower()}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                batch.append(TF.to_dtype(TF.pil_to_tensor(images.load(i)), torch.float32, scale=True))
                shape = shape or batch[-1].shape
                if batch[-1].shape != shape:
                    raise ConfigError(f"--to ddranking: {src} is {tuple(batch[-1].shape[1:])}, other images "
                                      f"{tuple(shape[1:])}; DD-Ranking needs one size")
            x = torch.stack(batch)
            if net is not None:
                logits.append(net(x.to(device)).cpu())
            tensors.append((x - mean) / std)
            timer.items += len(batch)
        stacked = torch.cat(tensors)
        atomic_torch_save(out / "images.pt", stacked)
        if logits:
            atomic_torch_save(out / "labels.pt", torch.cat(logits))
        elif (out / "labels.pt").exists():
            (out / "labels.pt").unlink()  # a stale file from an earlier --force export with another teacher
        atomic_torch_save(out / "lr.pt", torch.tensor(float(rec.lr)))
        conf = ddranking_config(name, ipc, tuple(stacked.shape[-2:]), rec, mode, min(rec.batch_size, len(order)))
        atomic_write_text(out / "config.yaml", _header(run.path, rec, teacher) + yaml.safe_dump(conf, sort_keys=False))
    target.finish_output()
    return out, len(order)
