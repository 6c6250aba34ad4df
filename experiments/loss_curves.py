"""Plot the training loss of `d4m generator train` runs (their loss.csv) against samples seen.

    python experiments/loss_curves.py OUT.png RUN [RUN ...] [--by-objective] [--max-samples N]

Each RUN is a `d4m generator train` output folder (its loss.csv and train.json); the label is the folder name.
Runs trained with different objectives (epsilon vs v-prediction) have losses of different scale, so ``--by-objective``
draws one panel per ``prediction`` read from each run's train.json; ``--max-samples`` cuts every curve there, so
runs trained for different lengths are compared at equal budgets.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def train_config(run: Path) -> dict:
    """The training settings: train.json in older model folders, else d4m.json's ``train`` (train.json now lives in
    the work folder beside the model)."""
    if (run / "train.json").is_file():
        return json.loads((run / "train.json").read_text())
    return json.loads((run / "d4m.json").read_text()).get("train", {})


def read_curve(run: Path) -> tuple[list[int], list[float]]:
    """(samples seen, loss) per logged step, from a run's loss.csv and the batch size it trained with."""
    batch = train_config(run).get("batch_size", 1)
    with open(run / "loss.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) * batch for r in rows], [float(r["loss"]) for r in rows]


def objective(run: Path) -> str:
    return train_config(run).get("prediction", "epsilon")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--by-objective", action="store_true", help="one panel per objective (epsilon, v_prediction)")
    ap.add_argument("--max-samples", type=int, help="plot each curve up to this many training samples")
    a = ap.parse_args()
    groups: dict[str, list[Path]] = {}
    for run in a.runs:
        groups.setdefault(objective(run) if a.by_objective else "loss", []).append(run)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (title, runs) in zip(axes[0], groups.items()):
        for run in runs:
            x, y = read_curve(run)
            if a.max_samples:
                keep = [i for i, v in enumerate(x) if v <= a.max_samples]
                x, y = [x[i] for i in keep], [y[i] for i in keep]
            ax.plot([v / 1000 for v in x], y, label=run.name, lw=1.2)
            print(f"{run.name}: {len(y)} points, loss {y[0]:.3f} at {x[0]} samples -> {y[-1]:.3f} at {x[-1]}")
        ax.set_xlabel("training samples (thousands)")
        ax.set_ylabel("loss (mean of the logged window)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
