"""Table 4 at convergence: does D4M (and its guided variants) beat random real images under equal soft labels?
(issue 21, part 3)

    python experiments/table4_converged.py --epochs E [--recipe locked] [--seeds 1] [--sets NAME ...] [--hard]
        [--generator cifar10-taef2] [--guidance 16] [--shared ../shared] [--out runs/table4c] [--jobs 2]
        [--random-from runs/converged] [--prepare] [--smoke]

One set of D4M prototypes (online k-means on the TAEF2 latents of 1,000 seeded training images per class, IPC 10,
as in the earlier tables) feeds every synthesis; every set is IPC 10 at 32 px:

- ``random``: ``d4m select --method random --seed 0`` (the subset ``converged.py`` measured);
- ``decode``: the prototypes decoded as they are (``distill --generator none``);
- ``noise-init``: the generator from pure noise (Table 4's "w/o prototypes");
- ``d4m-s0.5``, ``d4m-s0.7``: D4M img2img from the prototypes at that strength;
- ``cand4``, ``cand4-div0.5``: 4 candidates per image, kept by the teacher (diversity weight 0 / 0.5);
- ``noise-mg0.5``: noise-init with mode guidance 0.5 over the first half of the steps.

Students: ConvNet-W128, ResNet-20 soft labels, the same ``--recipe`` / ``--epochs`` / seeds for every set, top-1
after the last epoch on the 10,000 test JPEGs. ``--hard`` adds hard-label students (for HLR). Afterwards every
student is also scored on a validation split of held-out training images (``val_pick.py``), so a setting can be
picked without the test set, and the teacher's agreement and a diversity measure are computed per set
(``teacher_agreement.py``). IOR = soft - random soft; HLR = full - hard, with full the teacher record's top-1
(DD-Ranking's definitions, as ``d4m evaluate --card``). Every step is a resumable d4m command. Writes
``<out>/results.json``, ``<out>/results.md`` and ``<out>/grid.jpg`` (the sets side by side, in ``--sets`` order).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_offline import Runner, assets  # noqa: E402  (the same resumable command runner)

ROOT = Path(__file__).resolve().parents[1]
SETS = ("random", "decode", "noise-init", "d4m-s0.5", "d4m-s0.7", "cand4", "cand4-div0.5", "noise-mg0.5")


def synthesis_args(name: str, teacher: str) -> list[str] | None:
    """The ``d4m synthesize`` options that make set ``name`` from the prototypes (None: not a synthesis)."""
    table = {"noise-init": ["--init", "noise"], "d4m-s0.5": ["--strength", "0.5"], "d4m-s0.7": ["--strength", "0.7"],
             "cand4": ["--strength", "0.7", "--candidates", "4", "--candidate-teacher", teacher, "--diversity", "0"],
             "cand4-div0.5": ["--strength", "0.7", "--candidates", "4", "--candidate-teacher", teacher,
                              "--diversity", "0.5"],
             "noise-mg0.5": ["--init", "noise", "--mode-guidance", "0.5", "--mode-stop", "0.5"]}
    return table.get(name)


def link_random(dst: Path, run: Path, cell: Path) -> None:
    """``dst``: a read-only view of converged.py's random run (its files linked) with ``cell``'s students under
    ``dst/eval``, so the random row is read like every other set (summaries, validation split, agreement)."""
    for f in run.iterdir():
        if f.name not in ("eval", "labels") and not (dst / f.name).exists():
            dst.mkdir(parents=True, exist_ok=True)
            (dst / f.name).symlink_to(f)
    for recipe_dir in cell.glob("*/*"):
        link = dst / "eval" / recipe_dir.parent.name / recipe_dir.name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(recipe_dir)


def summary(run: Path, recipe: str, labels: str) -> dict | None:
    path = run / "eval" / "convnet-w128" / (recipe + ("-hard" if labels == "hard" else "")) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "table4c"))
    ap.add_argument("--generator", default="cifar10-taef2")
    ap.add_argument("--guidance", type=float, default=16.0, help="the cifar10-ipc10-cpu preset's (RESULTS 2.6)")
    ap.add_argument("--recipe", default="locked")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--hard", action="store_true", help="also hard-label students (HLR)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--random-from", help="a converged.py output: its random-ipc10 run and its students of this recipe "
                                           "and schedule are the random row (the same command, so trained once)")
    ap.add_argument("--prepare", action="store_true", help="make the sets only (no students)")
    ap.add_argument("--smoke", action="store_true", help="2 images per class clustered from 20, 2 epochs, 5 steps")
    a = ap.parse_args()
    train, test, teacher, codec = assets(a.shared)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out, a.jobs)
    ipc, pool, steps = ("2", "20", "5") if a.smoke else ("10", "1000", "50")
    val = ["--val", f"folder:{test}"] + (["--val-limit", "200"] if a.smoke else [])
    run("decode", ["distill", "--data", f"folder:{train}", "--codec", codec, "--generator", "none", "--size", "64",
                   "--ipc", ipc, "--kmeans", "online", "--max-per-class", pool, "--out", str(out / "decode"),
                   "--workers", "0"])
    if "random" in a.sets and not a.random_from:
        run("random", ["select", "--method", "random", "--data", f"folder:{train}", "--ipc", ipc, "--seed", "0",
                       "--out", str(out / "random")])
    generate = ["--generator", "model", "--model", a.generator, "--codec", codec, "--negative-prompt", "",
                "--steps", steps, "--device", "cpu", "--seed", "0", "--workers", "0", "--guidance", f"{a.guidance:g}"]
    for name in a.sets:  # synthesis is short next to the students: one at a time, before any of them
        extra = synthesis_args(name, teacher)
        if extra is not None:
            run(name, ["synthesize", "--run", str(out / "decode"), "--out", str(out / name), *generate, *extra])
    if a.prepare:
        return 0
    if a.epochs is None:
        raise SystemExit("--epochs is required (the converged schedule, from converged.py)")
    labels = ("stored", "hard") if a.hard else ("stored",)

    def evaluate(name: str, lab: str) -> None:
        if name == "random" and a.random_from:  # converged.py's own command for this cell, then links to it
            src = Path(a.random_from).resolve()
            cell = src / "eval" / f"{a.recipe}-{lab}-{a.epochs}"
            run(f"random-eval-{lab}", ["evaluate", "--run", str(src / "random-ipc10"), "--teacher", teacher,
                                       "--student", "convnet-w128", "--recipe", a.recipe, "--epochs", str(a.epochs),
                                       "--labels", lab, "--seeds", str(a.seeds), "--eval-every", str(a.epochs),
                                       "--out", str(cell), *val])
            link_random(out / "random", src / "random-ipc10", cell)
            return
        run(f"{name}-eval-{lab}", ["evaluate", "--run", str(out / name), "--teacher", teacher, "--student",
                                   "convnet-w128", "--recipe", a.recipe, "--epochs", str(a.epochs), "--labels", lab,
                                   "--seeds", str(a.seeds), "--eval-every", str(a.epochs), *val])

    with ThreadPoolExecutor(a.jobs) as jobs:  # every soft-label student first: they carry the verdict
        for f in [jobs.submit(evaluate, n, lab) for lab in labels for n in a.sets]:
            f.result()
    measures(out, a, teacher, train)
    write_results(out, a, teacher)
    return 0


def measures(out: Path, a, teacher: str, train: Path) -> None:
    """Validation-split scores of every student, and teacher agreement + diversity of every set (JSON files)."""
    here = Path(__file__).resolve().parent
    runs = [str(out / n) for n in a.sets]
    subprocess.run([sys.executable, str(here / "val_pick.py"), "--data", f"folder:{train}", "--split-dir",
                    str(out / "val-split"), "--per-class", "20" if a.smoke else "1000", "--exclude-pool",
                    "20" if a.smoke else "1000", "--recipe", a.recipe, "--rank", "d4m-", "cand", "noise",
                    "--json", str(out / "val_pick.json"), *runs], check=True)
    sys.path.insert(0, str(here))
    from teacher_agreement import agreement, diversity, load_run

    from d4m.models import load_teacher

    t = load_teacher(teacher)
    rows = {}
    for n in a.sets:
        own = n == "random" and a.random_from  # d4m opens no run through links: read the linked run itself
        images, targets = load_run(Path(a.random_from).resolve() / "random-ipc10" if own else out / n)
        whole, crops = agreement(t, images, targets, 4 if a.smoke else 20)
        rows[n] = {"whole": whole, "crops": crops, "diversity": diversity(t, images, targets)}
    (out / "agreement.json").write_text(json.dumps(rows, indent=1) + "\n")
    grid(out, a.sets, {n: (Path(a.random_from).resolve() / "random-ipc10" if n == "random" and a.random_from
                           else out / n) for n in a.sets})


def grid(out: Path, names: list[str], runs: dict[str, Path]) -> None:
    """``<out>/grid.jpg``: one block per set, left to right in ``names`` order, each a row per class of its images
    (the manifest's order), so every row of the table can be looked at side by side."""
    import torch
    from torchvision.utils import make_grid
    from torchvision.transforms.functional import to_pil_image
    from teacher_agreement import load_run

    blocks = []
    for n in names:
        images, targets = load_run(runs[n])
        order = sorted(range(len(targets)), key=lambda i: (int(targets[i]), i))
        per_class = max(int((targets == c).sum()) for c in targets.unique())
        blocks.append(make_grid(images[order], nrow=per_class, padding=1, pad_value=1.0))
    height = max(b.shape[1] for b in blocks)
    blocks = [torch.nn.functional.pad(b, (0, 6, 0, height - b.shape[1]), value=1.0) for b in blocks]
    to_pil_image(torch.cat(blocks, dim=2)).save(out / "grid.jpg", quality=90)


def write_results(out: Path, a, teacher: str) -> None:
    from d4m.evaluate.card import full_data_accuracy

    full, source = full_data_accuracy(teacher, None)
    agree = json.loads((out / "agreement.json").read_text())
    val = {(r["run"], r["recipe"].split("/")[1]): r for r in json.loads((out / "val_pick.json").read_text())}
    rand = summary(out / "random", a.recipe, "stored") if "random" in a.sets else None
    base = rand["last_epoch_top1"]["mean"] if rand else None
    table, lines = {}, [
        f"recipe `{a.recipe}`, {a.epochs} epochs, {a.seeds} seed(s); full-data top-1 {full:.2f} ({source})", "",
        "| set | soft top-1 | IOR | hard top-1 | HLR | val (soft, seed 0) | teacher on images / crops | diversity |",
        "|---|---|---|---|---|---|---|---|"]
    for n in a.sets:
        soft, hard = summary(out / n, a.recipe, "stored"), summary(out / n, a.recipe, "hard")
        s = soft["last_epoch_top1"] if soft else None
        h = hard["last_epoch_top1"] if hard else None
        v = val.get((n, a.recipe))
        row = {"soft": s, "hard": h, "IOR": s["mean"] - base if s and base is not None else None,
               "HLR": full - h["mean"] if h else None, "val_seed0": v["val_all"][0] if v else None, **agree[n]}
        table[n] = row

        def f(x, fmt="{:.2f}"):
            return "-" if x is None else fmt.format(x)

        sd = (lambda m: f"{m['mean']:.2f} ± {m['std']:.2f}" if m else "-")
        lines.append(f"| {n} | {sd(s)} | {f(row['IOR'], '{:+.2f}')} | {sd(h)} | {f(row['HLR'])} | "
                     f"{f(row['val_seed0'])} | {row['whole']:.1f}% / {row['crops']:.1f}% | {row['diversity']:.3f} |")
    ranked = {n: r["val_seed0"] for n, r in table.items() if n != "random" and r["val_seed0"] is not None}
    if ranked:
        pick = max(ranked, key=ranked.get)
        lines += ["", f"picked on the validation split (seed 0): {pick} "
                      f"(val {ranked[pick]:.2f}, test {table[pick]['soft']['mean']:.2f})"]
    (out / "results.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
