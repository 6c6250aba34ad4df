"""CIFAR-10 end to end with offline assets: D4M prototypes (TAEF2 codec, no diffusion model) against real-image
baselines, ConvNet-W128 students with the ResNet-20 teacher, `paper` and `locked` recipes, 3 seeds, cards.

    python experiments/cifar10_offline.py [--shared ../shared] [--out runs/exp-c10] [--smoke]

Every step is a d4m command that resumes where it stopped, so rerunning this script after an interruption continues
the work. It ends by writing ``<out>/results.json`` and ``<out>/results.md`` (the table that RESULTS.md quotes).
``--smoke`` runs the same plan on a tiny scale (2 epochs, 1 seed, 20 images per class) to check the pipeline.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES_PER_S = 130  # ConvNet-W128 on 2 CPU cores (measured), for the time estimate
ENCODE_IMAGES_PER_S = 40  # TAEF2 at 64 px on 2 CPU cores


def plan(a) -> dict:
    """The experiment grid: runs to make, then evaluations (run, recipe, epochs, teacher, card)."""
    ipcs = (10,) if a.smoke else (10, 50)
    runs = {}
    for ipc in ipcs:
        for mode in ("online", "full"):
            runs[f"decode-{mode}-ipc{ipc}"] = ["distill", "--data", f"folder:{a.train}", "--codec", a.codec,
                                               "--generator", "none", "--size", "64", "--ipc", str(ipc),
                                               "--kmeans", mode, "--max-per-class", str(a.per_class)]
        runs[f"random-ipc{ipc}"] = ["select", "--method", "random", "--data", f"folder:{a.train}", "--ipc", str(ipc)]
        runs[f"kcenter-ipc{ipc}"] = ["select", "--method", "kcenter", "--data", f"folder:{a.train}", "--codec",
                                     a.codec, "--size", "64", "--ipc", str(ipc), "--max-per-class", str(a.per_class)]
    evals = []
    for name in runs:
        ipc = int(name.rsplit("ipc", 1)[1])
        for recipe in ("paper", "locked"):
            # equal optimisation work at both IPC: epochs scale down as the distilled set grows
            epochs = a.epochs[recipe] * 10 // ipc if not a.smoke else 2
            evals.append({"run": name, "recipe": recipe, "epochs": epochs, "teacher": "resnet20",
                          "card": recipe == "locked", "ipc": ipc})
    evals.append({"run": "decode-online-ipc10", "recipe": "locked", "epochs": evals[1]["epochs"],
                  "teacher": "resnet56", "card": False, "ipc": 10})
    return {"runs": runs, "evals": evals}


def estimate_hours(p: dict, a) -> float:
    encode = sum(10 * a.per_class for n in p["runs"] if not n.startswith("random")) / ENCODE_IMAGES_PER_S
    train = 0
    for e in p["evals"]:
        students = a.seeds * (2 if e["card"] else 1) + (a.seeds if e["card"] and "random" not in e["run"] else 0)
        train += students * e["epochs"] * 10 * e["ipc"] / TRAIN_IMAGES_PER_S
    return (encode + train) / 3600


def d4m(args: list[str], log) -> None:
    cmd = [sys.executable, "-m", "d4m", *args]
    log.write(f"$ d4m {shlex.join(args)}\n")
    log.flush()
    start = time.time()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    log.write(f"# exit {proc.returncode} after {time.time() - start:.0f} s\n")
    if proc.returncode:
        raise SystemExit(f"failed: d4m {shlex.join(args)} (see the log)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "exp-c10"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=1000, help="images per class encoded for k-means / k-center")
    ap.add_argument("--paper-epochs", type=int, default=300, help="epochs at IPC 10 (scaled by 10/IPC)")
    ap.add_argument("--locked-epochs", type=int, default=400, help="epochs at IPC 10 (scaled by 10/IPC)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    shared = Path(a.shared).resolve()
    a.train, a.test = shared / "data/cifar10/train", shared / "data/cifar10/test"
    a.codec = f"taef2:{shared / 'weights/taef2'}"
    teachers = {"resnet20": f"cifar-resnet20:{shared / 'weights/cifar10-resnet/resnet20-12fca82f.th'}",
                "resnet56": f"cifar-resnet56:{shared / 'weights/cifar10-resnet/resnet56-4bfd9763.th'}"}
    a.epochs = {"paper": a.paper_epochs, "locked": a.locked_epochs}
    if a.smoke:
        a.seeds, a.per_class = 1, 20
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    p = plan(a)
    print(f"plan: {len(p['runs'])} runs, {len(p['evals'])} evaluations x {a.seeds} seeds; expected time on 2 CPU "
          f"cores: about {estimate_hours(p, a):.1f} h (resumable: rerun to continue)", flush=True)
    val = ["--val", f"folder:{a.test}"] + (["--val-limit", "200"] if a.smoke else [])
    with open(out / "experiment.log", "a", encoding="utf-8") as log:
        for name, args in p["runs"].items():
            print(f"run {name}", flush=True)
            d4m(args + ["--out", str(out / name), "--workers", "0"], log)
        for e in p["evals"]:
            print(f"evaluate {e['run']} {e['recipe']} ({e['epochs']} epochs, {e['teacher']})", flush=True)
            args = ["evaluate", "--run", str(out / e["run"]), "--teacher", teachers[e["teacher"]], "--student",
                    "convnet-w128", "--recipe", e["recipe"], "--epochs", str(e["epochs"]), "--seeds", str(a.seeds),
                    "--eval-every", str(e["epochs"]), "--out", str(out / e["run"] / f"eval-{e['teacher']}"), *val]
            d4m(args + (["--card"] if e["card"] else []), log)
        for name in p["runs"]:
            if name.endswith("ipc10"):
                d4m(["report", "--run", str(out / name), "--teacher", teachers["resnet20"]], log)
    write_results(out, p, a)
    return 0


def write_results(out: Path, p: dict, a) -> None:
    rows = []
    for e in p["evals"]:
        folder = out / e["run"] / f"eval-{e['teacher']}" / "convnet-w128" / e["recipe"]
        summary = json.loads((folder / "summary.json").read_text())
        card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").is_file() else None
        rows.append({**e, "top1": summary["last_epoch_top1"], "best": summary["best_epoch_top1"], "card": card})
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    def ms(x):
        return "-" if not x or x.get("mean") is None else f"{x['mean']:.2f} ± {x['std']:.2f}"

    lines = ["| method | IPC | recipe (epochs) | teacher | top-1 last epoch | best epoch | IOR | HLR |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["card"] or {}
        lines.append(f"| {r['run'].rsplit('-ipc', 1)[0]} | {r['ipc']} | {r['recipe']} ({r['epochs']}) | "
                     f"{r['teacher']} | {ms(r['top1'])} | {ms(r['best'])} | {c.get('IOR', '-')} | {c.get('HLR', '-')} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
