"""How sharp are a run's images, and does a prototype's cluster size explain it?

    python experiments/sharpness.py RUN [RUN ...]

Sharpness is the variance of the 4-neighbour Laplacian of the grey image (higher = more edges/detail), median
over the run's images. For a run with prototypes (``decode`` or D4M) it also gives the Spearman correlation
between the number of latents a prototype absorbed (``counts`` in prototypes.safetensors) and the sharpness of the
image made from it: a k-means centre that averaged hundreds of latents decodes to a blur.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.stats import spearmanr

import d4m


def laplacian_variance(path: Path) -> float:
    g = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def describe(run: Path) -> str:
    rows = d4m.Run(run).manifest()
    if not rows:
        raise SystemExit(f"sharpness: {run}: no images listed (no manifest.jsonl, or an empty one)")
    sharp = np.array([laplacian_variance(run / r["file"]) for r in rows])
    msg = f"{run.name}: {len(rows)} images, sharpness median {np.median(sharp):.0f}"
    if (run / "prototypes.safetensors").is_file() and "prototype_index" in rows[0]:
        counts = d4m.Run(run).prototypes()["counts"]
        c = np.array([counts[r["class_index"], r["prototype_index"]].item() for r in rows])
        rho = spearmanr(c, sharp)
        msg += (f"; latents per prototype min {c.min()} / median {np.median(c):.0f} / max {c.max()}; "
                f"Spearman(count, sharpness) {rho.statistic:+.2f} (p {rho.pvalue:.1g})")
        small, large = sharp[c <= 5], sharp[c >= 50]
        if len(small) and len(large):
            msg += (f"; median sharpness of prototypes from <= 5 latents {np.median(small):.0f} (n {len(small)}) "
                    f"vs >= 50 latents {np.median(large):.0f} (n {len(large)})")
    return msg


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="d4m run directories (with manifest.jsonl)")
    for run in p.parse_args().runs:
        print(describe(run), flush=True)
