"""How often does the teacher name the right class on a run's images, whole and as the students see them?

    python experiments/teacher_agreement.py TEACHER RUN [RUN ...] [--crops 20]

TEACHER is a d4m teacher spec (e.g. cifar-resnet20:PATH). For each run: the teacher's top-1 against the image's
class on the whole images, and on ``--crops`` seeded RandomResizedCrop (scale 0.08-1, the recipes' setting) +
flip views of each image, resized back to the image size. Soft labels can only teach what the teacher sees: when
it misreads the crops, a student trained on its soft labels learns the misreading. ``diversity``: the mean
within-class pairwise cosine distance of the teacher's penultimate features (0: every image of a class alike).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

import d4m
from d4m.models import load_teacher


def load_run(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = d4m.Run(run).manifest()
    to_tensor = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    images = torch.stack([to_tensor(Image.open(run / r["file"]).convert("RGB")) for r in rows])
    return images, torch.tensor([r["class_index"] for r in rows])


@torch.no_grad()
def agreement(teacher, images: torch.Tensor, targets: torch.Tensor, crops: int, seed: int = 0) -> tuple[float, float]:
    whole = (teacher(images).argmax(1) == targets).float().mean().item() * 100
    size = images.shape[-1]
    view = v2.Compose([v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    torch.manual_seed(seed)
    hits = 0
    for _ in range(crops):
        batch = torch.stack([view(img) for img in images])
        hits += (teacher(batch).argmax(1) == targets).sum().item()
    return whole, hits / (crops * len(images)) * 100


@torch.no_grad()
def diversity(teacher, images: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over classes of the mean pairwise cosine distance (1 - cos) between the teacher's penultimate features
    of a class's images: 0 when a class is one picture repeated; the feature space --diversity scores in."""
    from d4m.methods.features import teacher_features

    feats = torch.nn.functional.normalize(teacher_features(teacher, images).float(), dim=1)
    per_class = []
    for c in targets.unique():
        f = feats[targets == c]
        n = len(f)
        if n > 1:
            per_class.append(((1 - f @ f.T).sum() / (n * (n - 1))).item())
    return sum(per_class) / max(1, len(per_class))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--crops", type=int, default=20)
    a = ap.parse_args()
    teacher = load_teacher(a.teacher)
    print("| run | images | teacher top-1, whole images | teacher top-1, crops as trained | diversity |\n"
          "|---|---|---|---|---|")
    for run in map(Path, a.runs):
        images, targets = load_run(run)
        whole, crops = agreement(teacher, images, targets, a.crops)
        div = diversity(teacher, images, targets)
        print(f"| {run.name} | {len(images)} | {whole:.1f}% | {crops:.1f}% | {div:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
