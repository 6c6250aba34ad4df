"""Report figures with matplotlib (Agg): distilled-vs-real image grids (paper Fig. 4/5) and a t-SNE (Fig. 7)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from d4m.errors import missing_package

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ModuleNotFoundError as exc:  # a base dependency; a broken install gets one line, not a traceback
    raise missing_package(exc, "the report's figures") from None


def image_grid(distilled: list[list], real: list[list], names: list[str], path: Path, title: str) -> Path:
    """One row per class: its distilled images (left block), a gap, then real images of that class (right)."""
    rows = len(names)
    left = max(len(r) for r in distilled)
    right = max((len(r) for r in real), default=0)
    cols = left + (right + 1 if right else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(0.75 * cols + 1.6, 0.75 * rows + 0.6), squeeze=False)
    for r in range(rows):
        cells = list(distilled[r]) + [None] * (left - len(distilled[r]))
        if right:
            cells += [None] + list(real[r]) + [None] * (right - len(real[r]))
        for c, img in enumerate(cells):
            ax = axes[r][c]
            ax.axis("off")
            if img is not None:
                ax.imshow(np.asarray(img), interpolation="nearest")
        axes[r][0].text(-0.1, 0.5, names[r], transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    axes[0][0].set_title("distilled", loc="left", fontsize=9)
    if right:
        axes[0][left + 1].set_title("real", loc="left", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=1.5 / (0.75 * cols + 1.6), right=0.99, top=1 - 0.5 / (0.75 * rows + 0.6), bottom=0.01,
                        wspace=0.05, hspace=0.05)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class _IterationBar(io.TextIOBase):
    """A stdout stand-in that turns scikit-learn's verbose t-SNE lines ("[t-SNE] Iteration 50: ...") into a tqdm bar
    over its iterations (tqdm gives the rate and the expected time); other lines are dropped."""

    def __init__(self, bar):
        self.bar = bar

    def write(self, text: str) -> int:
        for found in re.finditer(r"Iteration (\d+)", text):
            self.bar.update(max(0, int(found.group(1)) - self.bar.n))
        return len(text)


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init) of [n, d] features; perplexity capped for small n. Shows progress."""
    from sklearn.manifold import TSNE
    from tqdm.auto import tqdm

    n = features.shape[0]
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, verbose=2)
    total = int(getattr(tsne, "max_iter", None) or getattr(tsne, "n_iter", None) or 1000)
    with tqdm(total=total, desc=f"t-SNE of {n} points", unit="iter") as bar, \
            contextlib.redirect_stdout(_IterationBar(bar)):
        xy = tsne.fit_transform(features.astype(np.float32))
        bar.update(bar.total - bar.n)
    return xy


def tsne_figure(xy: np.ndarray, labels: np.ndarray, distilled: np.ndarray, names: list[str], path: Path,
                title: str) -> Path:
    """Real images as small dots, distilled images as large outlined stars, one colour per class."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for c, name in enumerate(names):
        real = (labels == c) & ~distilled
        syn = (labels == c) & distilled
        ax.scatter(xy[real, 0], xy[real, 1], s=8, color=cmap(c % cmap.N), alpha=0.45, linewidths=0)
        ax.scatter(xy[syn, 0], xy[syn, 1], s=120, marker="*", color=cmap(c % cmap.N), edgecolors="black",
                   linewidths=0.6, label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="stars: distilled\ndots: real",
              title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
