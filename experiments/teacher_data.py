"""Small ImageFolder datasets for the teacher-defaults table (issue 25): a CIFAR-10 subset and Fashion-MNIST.

    python experiments/teacher_data.py [--shared ../shared] [--out /tmp/d4m-teacher-data] [--train 300] [--test 100]

Writes ``<out>/cifar10-<train>/{train,test}/<class>/`` (symbolic links to the shared CIFAR-10 JPEGs, the first
``--train`` / ``--test`` files of each class) and ``<out>/fmnist-<train>/{train,test}/<class>/NNNN.png`` (the first
images of each class of Fashion-MNIST, 28 px grey saved as PNG; from Debian's ``dataset-fashion-mnist`` idx files
under /usr/share/datasets/fashion-mnist). Nothing here is committed; the data stays outside the repository.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                  "ankle-boot"]


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path, "rb").read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def cifar_subset(shared: Path, out: Path, per_class: dict[str, int]) -> None:
    for split, n in per_class.items():
        for cls_dir in sorted((shared / "data/cifar10" / split).iterdir()):
            dst = out / split / cls_dir.name
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls_dir.glob("*.jpg"))[:n]:
                if not (dst / f.name).exists():
                    (dst / f.name).symlink_to(f)


def fmnist_subset(out: Path, per_class: dict[str, int]) -> None:
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(FMNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FMNIST / f"{prefix}-labels-idx1-ubyte.gz")
        for c, name in enumerate(FMNIST_CLASSES):
            dst = out / split / f"{c}-{name}"
            dst.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(np.flatnonzero(labels == c)[:per_class[split]]):
                Image.fromarray(images[i]).save(dst / f"{k:04d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--out", default="/tmp/d4m-teacher-data")
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=100)
    args = ap.parse_args()
    per_class = {"train": args.train, "test": args.test}
    out = Path(args.out)
    cifar_subset(Path(args.shared), out / f"cifar10-{args.train}", per_class)
    print(out / f"cifar10-{args.train}")
    if FMNIST.is_dir():
        fmnist_subset(out / f"fmnist-{args.train}", per_class)
        print(out / f"fmnist-{args.train}")
    else:
        print(f"{FMNIST}: missing (apt-get install dataset-fashion-mnist); Fashion-MNIST skipped")


if __name__ == "__main__":
    main()
