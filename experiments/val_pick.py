"""Pick a distillation setting without the test set: re-score saved students on a validation split of held-out
training images, next to their test top-1.

    python experiments/val_pick.py --data folder:TRAIN --split-dir DIR [--per-class 1000] RUN [RUN ...]
        [--exclude-pool 1000] [--recipe locked] [--rank d4m- noise-init] [--json FILE]

The split: per class, ``--per-class`` training images outside the first ``--exclude-pool`` images of the class in
the prototype stage's seeded order (the pool D4M's prototypes were clustered from, seed 0) and outside every image a
run's manifest names as its ``source`` (e.g. the random-real subset), drawn with a fixed seed and linked into
``--split-dir`` as an ImageFolder. Every ``RUN/eval/<student>/<recipe>/seed<k>/student.safetensors`` is then scored
on it. The students never saw these images; the teacher that labelled their crops and a generator trained on the
whole training set did, so this split is held out from the distilled sets, not from every model involved.
Prints one markdown row per run and recipe: val and test top-1 of seed 0 (the seed a one-seed grid has) and the
means over all seeds; then, among ``--recipe`` and the runs named by ``--rank``, the one that seed 0 ranks first
on each split. The split folder is reused when it exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def held_out(dataset, pool: int, per_class: int, used: set[str], seed: int = 0) -> list[int]:
    """Per class, ``per_class`` indices outside the prototype pool and ``used``, in a seeded order."""
    from d4m.config import DistillConfig
    from d4m.prototypes.stage import class_indices
    from d4m.seeding import cpu_generator

    out = []
    # each class in the prototype stage's seeded order, whole: its first ``pool`` are what k-means clustered
    for c, order in enumerate(class_indices(dataset, DistillConfig(ipc=1, seed=seed))):
        rest = [i for i in order[pool:] if dataset.describe(i) not in used]
        pick = torch.randperm(len(rest), generator=cpu_generator(seed, "val-pick", c)).tolist()[:per_class]
        if len(pick) < per_class:
            raise SystemExit(f"class {dataset.classes[c]}: only {len(rest)} held-out images, --per-class {per_class}")
        out += sorted(rest[j] for j in pick)
    return out


def write_split(dataset, indices: list[int], root: Path) -> None:
    for i in indices:
        src = Path(dataset.describe(i))
        dst = root / dataset.classes[dataset.targets[i]] / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.symlink_to(src.resolve())


def main() -> int:
    from d4m.data import open_dataset
    from d4m.evaluate.val import ValSet
    from d4m.models import load_teacher

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True, help="the training data the runs were distilled from (folder:...)")
    ap.add_argument("--split-dir", required=True)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--exclude-pool", type=int, default=1000, help="the prototype stage's --max-per-class")
    ap.add_argument("--recipe", default="locked", help="the recipe whose runs are ranked (default locked)")
    ap.add_argument("--rank", nargs="+", default=["d4m-", "noise-init"],
                    help="rank only runs whose name starts with one of these (default: the generator's settings)")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    dataset = open_dataset(a.data, "train")
    used = set()
    for run in a.runs:
        manifest = Path(run) / "manifest.jsonl"
        if manifest.is_file():
            used |= {json.loads(line).get("source") for line in manifest.read_text().splitlines() if line.strip()}
    split = Path(a.split_dir)
    if not split.is_dir():
        write_split(dataset, held_out(dataset, a.exclude_pool, a.per_class, used), split)
    val = None
    rows = []
    for run in a.runs:
        for recipe_dir in sorted(Path(run).glob("eval/*/*")):
            val_top1, test_top1 = [], []
            for seed_dir in sorted(recipe_dir.glob("seed*")):
                ckpt = seed_dir / "student.safetensors"
                if not ckpt.is_file():
                    continue
                spec = f"checkpoint:{ckpt}"
                val = val or ValSet(f"folder:{split}", load_teacher(spec).input_size)
                student = load_teacher(spec, classes=val.classes, data="the validation split")
                val_top1.append(val.top1(student.model, columns=student.columns))
                test_top1.append(json.loads((seed_dir / "metrics.json").read_text())["last_top1"])
            if val_top1:
                rows.append({"run": Path(run).name, "recipe": f"{recipe_dir.parent.name}/{recipe_dir.name}",
                             "seeds": len(val_top1), "val": statistics.mean(val_top1), "val_all": val_top1,
                             "test": statistics.mean(test_top1), "test_all": test_top1})
    print(f"validation split: {len(val) if val else 0} held-out training images in {split}\n")
    print("| run | recipe | val, seed 0 | test, seed 0 | seeds | val, mean | test, mean |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['recipe']} | {r['val_all'][0]:.2f} | {r['test_all'][0]:.2f} | {r['seeds']} | "
              f"{r['val']:.2f} | {r['test']:.2f} |")
    ranked = [r for r in rows if r["recipe"].endswith("/" + a.recipe) and r["run"].startswith(tuple(a.rank))]
    for key in ("val", "test"):
        if ranked:
            best = max(ranked, key=lambda r: r[key + "_all"][0])
            print(f"\nfirst on {key} (seed 0, recipe {a.recipe}): {best['run']} ({best[key + '_all'][0]:.2f})")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
