"""``d4m teacher train``: a plain supervised classifier on real data, saved as a d4m checkpoint (safetensors)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from tqdm import tqdm

from d4m.checks import finite, whole
from d4m.errors import ConfigError, D4MError
from d4m.data import open_dataset
from d4m.models import Normalized, create_model, save_checkpoint
from d4m.runio import StageTimer
from d4m.seeding import derive_seed
from d4m.train.checkpoint import load_training_state, save_training_state


def train_transform(size: int):
    """Small images: RandomCrop with padding size/8 + flip; larger: RandomResizedCrop + flip."""
    if size <= 64:
        crop = [v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.RandomCrop(size, padding=size // 8)]
    else:
        crop = [v2.RandomResizedCrop(size, antialias=True)]
    return v2.Compose([v2.PILToTensor(), *crop, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


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


def train_teacher(data: str, arch: str, out: Path, size: int, epochs: int = 30, batch_size: int = 128,
                  lr: float = 0.05, device: str = "cpu", workers: int = 0, limit: int | None = None, seed: int = 0,
                  log_path: Path | None = None, evaluate=None) -> dict:
    """SGD (momentum 0.9, nesterov, wd 5e-4, cosine per epoch) with hard labels; returns the checkpoint metadata.

    ``evaluate(model) -> top-1 %`` (optional) gives the val accuracy stored in the checkpoint's metadata.
    The training state is saved after every epoch next to ``out`` (``<out>.train.pt``); a rerun resumes from it,
    and because each epoch's shuffle and augmentation are seeded by (seed, epoch) the result is the same as an
    uninterrupted run.
    """
    whole("--epochs", epochs, 1)
    whole("--batch-size", batch_size, 1)
    whole("--workers", workers, 0)
    whole("--limit", limit, 1, optional=True)
    finite("--lr", lr, 0.0, low_open=True)
    check_teacher_out(Path(out))
    train = open_dataset(data, "train", transform=train_transform(size))
    indices = list(range(len(train)))
    if limit and limit < len(train):
        g = torch.Generator().manual_seed(derive_seed(seed, "teacher-subset"))
        indices = torch.randperm(len(train), generator=g)[:limit].tolist()
    torch.manual_seed(derive_seed(seed, "teacher"))
    model = Normalized(create_model(arch, len(train.classes), size)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    state_path = Path(str(out) + ".train.pt")
    info = {"arch": arch, "data": data, "size": size, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "seed": seed, "limit": limit}
    start, history = (load_training_state(state_path, model, opt, info) if state_path.is_file() else (0, []))
    order = torch.Generator()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, indices), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=len(indices) > batch_size,
                                         generator=order)
    with StageTimer(log_path, "teacher-train", unit="image_epochs", arch=arch, data=data) as timer:
        for epoch in tqdm(range(start, epochs), desc=f"teacher {arch}", unit="epoch", initial=start, total=epochs):
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
            order.manual_seed(derive_seed(seed, "teacher-order", epoch))
            torch.manual_seed(derive_seed(seed, "teacher-augment", epoch))
            model.train()
            total = 0.0
            for x, y in loader:
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                timer.items += len(y)
                total += float(loss) * len(y)
            history.append({"epoch": epoch + 1, "train_loss": total / max(len(indices), 1)})
            save_training_state(state_path, model, opt, epoch + 1, history, info)
    accuracy = round(evaluate(model) / 100, 4) if evaluate is not None else None
    save_checkpoint(Path(out), model.net, arch, train.classes, size, val_accuracy=accuracy, data=data,
                    epochs=epochs, train_images=len(indices))
    state_path.unlink(missing_ok=True)
    return {"arch": arch, "classes": len(train.classes), "image_size": size, "val_accuracy": accuracy}
