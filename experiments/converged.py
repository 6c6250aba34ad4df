"""How long must a student train before its verdict stops moving? (issue 21, part 1)

    python experiments/converged.py [--shared ../shared] [--out runs/converged] [--epochs 150 300 600 1000]
        [--recipes locked ddranking] [--labels stored hard] [--seeds 1] [--jobs 2] [--smoke]

Random real images, IPC 10 (``d4m select --method random``, seed 0), ConvNet-W128 students, the ResNet-20 teacher,
top-1 on the 10,000 CIFAR-10 test JPEGs after the last epoch. One student per (recipe, labels, epochs, seed): a
cosine schedule depends on its length, so a 300-epoch run is not the first half of a 600-epoch one. The longest
students start first so that two jobs finish together. Every command is a resumable ``d4m evaluate``; rerunning
continues. Writes ``<out>/results.json`` and ``<out>/results.md`` (top-1 against epochs, the shortest schedule
within ``--tolerance`` points of the longest, and the measured cost per student).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_offline import Runner  # noqa: E402  (the same resumable command runner)

ROOT = Path(__file__).resolve().parents[1]


def result(folder: Path) -> tuple[dict, Path] | None:
    """The one summary.json under an evaluation folder (student/recipe[-hard]/summary.json) and its folder, or None."""
    found = sorted(folder.glob("*/*/summary.json")) if folder.is_dir() else []
    return (json.loads(found[0].read_text()), found[0].parent) if found else None


def train_seconds(folder: Path) -> float:
    """Training seconds per student: the per-epoch times each seed's metrics.json records, averaged over seeds."""
    per = [sum(h.get("epoch_s", 0.0) for h in json.loads(m.read_text()).get("history", []))
           for m in sorted(folder.glob("seed*/metrics.json"))]
    return sum(per) / max(1, len(per))


def pick(curve: dict[int, float], tolerance: float) -> int:
    """The shortest schedule whose top-1 is within ``tolerance`` points of the longest one's."""
    longest = curve[max(curve)]
    return min(e for e, acc in curve.items() if acc >= longest - tolerance)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "converged"))
    ap.add_argument("--epochs", type=int, nargs="+", default=[150, 300, 600, 1000])
    ap.add_argument("--recipes", nargs="+", default=["locked", "ddranking"])
    ap.add_argument("--labels", nargs="+", choices=("stored", "hard"), default=["stored", "hard"])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.5, help="points of top-1 (default 0.5)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="2 and 4 epochs, 200 val images")
    a = ap.parse_args()
    shared = Path(a.shared).resolve()
    train, test = shared / "data/cifar10/train", shared / "data/cifar10/test"
    teacher = f"cifar-resnet20:{shared / 'weights/cifar10-resnet/resnet20-12fca82f.th'}"
    if a.smoke:
        a.epochs = [2, 4]
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out, a.jobs)
    images = out / "random-ipc10"
    run("select", ["select", "--method", "random", "--data", f"folder:{train}", "--ipc", "10", "--seed", "0",
                   "--out", str(images)])
    val = ["--val", f"folder:{test}"] + (["--val-limit", "200"] if a.smoke else [])
    cells = sorted(((r, lab, e) for r in a.recipes for lab in a.labels for e in a.epochs), key=lambda c: -c[2])

    def evaluate(recipe: str, labels: str, epochs: int) -> None:
        name = f"{recipe}-{labels}-{epochs}"
        run(name, ["evaluate", "--run", str(images), "--teacher", teacher, "--student", "convnet-w128", "--recipe",
                   recipe, "--epochs", str(epochs), "--labels", labels, "--seeds", str(a.seeds), "--eval-every",
                   str(epochs), "--out", str(out / "eval" / name), *val])

    with ThreadPoolExecutor(a.jobs) as pool:
        for f in [pool.submit(evaluate, *c) for c in cells]:
            f.result()
    write_results(out, a, cells)
    return 0


def write_results(out: Path, a, cells) -> None:
    table, lines = {}, []
    for recipe in a.recipes:
        for labels in a.labels:
            curve, cost = {}, {}
            for e in sorted(a.epochs):
                found = result(out / "eval" / f"{recipe}-{labels}-{e}")
                if found and found[0]["last_epoch_top1"]["n"]:
                    curve[e] = found[0]["last_epoch_top1"]["mean"]
                    cost[e] = round(train_seconds(found[1]), 1)
            if curve:
                table[f"{recipe}-{labels}"] = {"top1": curve, "train_s": cost, "pick": pick(curve, a.tolerance)}
    lines += ["| recipe | labels | " + " | ".join(f"{e} ep" for e in sorted(a.epochs)) + " | shortest within "
              f"{a.tolerance:g} of the longest |", "|---|---|" + "---|" * (len(a.epochs) + 1)]
    for key, row in table.items():
        recipe, labels = key.rsplit("-", 1)
        cells_md = [f"{row['top1'][e]:.2f} ({row['train_s'][e] / 60:.1f} min)" if e in row["top1"] else "-"
                    for e in sorted(a.epochs)]
        lines.append(f"| {recipe} | {labels} | " + " | ".join(cells_md) + f" | {row['pick']} |")
    (out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
