"""Data-loader workers in the prototype stage: one pool for the whole stage vs a new loader per class.

    python bench/worker_pool.py [--classes 300] [--workers 2]

The case that exposed it: many classes with one image each (300 one-image classes took 2.2x longer with 2 workers
than with none, as every class started and stopped its own worker processes). The codec is a fixed 8x average
pool, so the time measured is the loading, not a network. Prints seconds and ratios side by side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from d4m.codec.base import Codec  # noqa: E402
from d4m.config import DistillConfig  # noqa: E402
from d4m.data import open_dataset  # noqa: E402
from d4m.prototypes.encode import EncodePool  # noqa: E402
from d4m.prototypes.stage import class_indices, cluster_class  # noqa: E402


class PoolCodec(Codec):
    name, latent_channels, downsample = "avgpool8", 3, 8

    def encode(self, images, generators=None):
        return torch.nn.functional.avg_pool2d(images, 8)


def make_data(root: Path, classes: int) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c:04d}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"c{c:04d}" / "0.png")
    return root


def stage_seconds(data: Path, workers: int, shared_pool: bool) -> float:
    cfg = DistillConfig(data=f"folder:{data}", ipc=1, size=64, workers=workers, encode_batch_size=32)
    dataset = open_dataset(cfg.data, "train")
    per_class = class_indices(dataset, cfg)
    t0 = time.perf_counter()
    pool = EncodePool(dataset, cfg.size, cfg.encode_batch_size, cfg.workers) if shared_pool else None
    for c, idx in enumerate(per_class):
        cluster_class(dataset, idx, PoolCodec(), cfg, c, pool=pool)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data", args.classes)
        base = stage_seconds(data, 0, shared_pool=True)
        per_class = stage_seconds(data, args.workers, shared_pool=False)
        pooled = stage_seconds(data, args.workers, shared_pool=True)
    print(f"{args.classes} one-image classes, prototype stage encode loop (seconds):")
    print(f"  workers 0:                              {base:7.2f}   1.00x")
    print(f"  workers {args.workers}, a new loader per class (old): {per_class:7.2f}   {per_class / base:.2f}x")
    print(f"  workers {args.workers}, one pool for the stage (new): {pooled:7.2f}   {pooled / base:.2f}x")
    print(f"  old / new: {per_class / pooled:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
