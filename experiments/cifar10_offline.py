"""CIFAR-10 end to end with offline assets: D4M prototypes (TAEF2 codec, no diffusion model) against real-image
baselines, ConvNet-W128 students with the ResNet-20 teacher, `paper` and `locked` recipes, 3 seeds, cards; with
``--generator DIR`` also the Table-4 ablation with a d4m-trained generator (D4M at strength 0.5 / 0.7, noise init).

    python experiments/cifar10_offline.py [--shared ../shared] [--out runs/exp-c10] [--jobs 2] [--generator DIR]
                                          [--smoke]

Every step is a d4m command that resumes where it stopped, so rerunning this script after an interruption continues
the work. ``--jobs N`` runs N commands at once with 2/N threads each (on 2 cores, two 1-thread jobs train 1.3x
faster than one 2-thread job). Each command's output goes to ``<out>/logs/``; ``<out>/experiment.log`` lists the
commands with exit status and time. It ends by writing ``<out>/results.json`` and ``<out>/results.md``.
``--smoke`` runs the same plan on a tiny scale (2 epochs, 1 seed, 20 images per class) to check the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from d4m.generators import resolve_model
from d4m.runio.rundir import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES_PER_S = 200  # ConvNet-W128, stored labels, 1 thread (measured; 320 with 2 threads)
VAL_S = 20  # one pass over the 10,000 test JPEGs, 1 thread
ENCODE_IMAGES_PER_S = 30  # TAEF2 at 64 px, 1 thread


def plan(a) -> dict:
    """The experiment grid: runs to make (name -> d4m args), then evaluations (run, recipe, epochs, teacher, card)."""
    ipcs = (10,) if a.smoke else (10, 50)
    runs, evals = {}, []
    for ipc in ipcs:
        group = {}
        for mode in ("online", "full"):
            group[f"decode-{mode}-ipc{ipc}"] = ["distill", "--data", f"folder:{a.train}", "--codec", a.codec,
                                                "--generator", "none", "--size", "64", "--ipc", str(ipc),
                                                "--kmeans", mode, "--max-per-class", str(a.per_class)]
        group[f"random-ipc{ipc}"] = ["select", "--method", "random", "--data", f"folder:{a.train}", "--ipc", str(ipc)]
        group[f"kcenter-ipc{ipc}"] = ["select", "--method", "kcenter", "--data", f"folder:{a.train}", "--codec",
                                      a.codec, "--size", "64", "--ipc", str(ipc), "--max-per-class", str(a.per_class)]
        # equal optimisation work at every IPC: epochs scale down as the distilled set grows
        epochs = {r: (a.epochs[r] * 10 // ipc if not a.smoke else 2) for r in ("paper", "locked")}
        for name in group:
            for recipe in ("paper", "locked"):
                evals.append({"run": name, "recipe": recipe, "epochs": epochs[recipe], "teacher": "resnet20",
                              "card": recipe == "locked" and ipc == 10, "ipc": ipc})
        if ipc == 10:
            evals.append({"run": "decode-online-ipc10", "recipe": "locked", "epochs": epochs["locked"],
                          "teacher": "resnet56", "card": False, "ipc": 10})
            if a.generator:
                gen = ["--generator", "model", "--model", str(a.generator), "--codec", a.codec, "--guidance",
                       str(a.guidance), "--negative-prompt", "", "--steps", "50", "--device", "cpu", "--seed", "0"]
                source = ["synthesize", "--run", str(a.out / "decode-online-ipc10")]
                for strength in (0.5, 0.7):
                    group[f"d4m-s{strength}-ipc10"] = source + gen + ["--strength", str(strength)]
                group["noise-init-ipc10"] = source + gen + ["--init", "noise"]
                for name in ("d4m-s0.5-ipc10", "d4m-s0.7-ipc10", "noise-init-ipc10"):
                    evals.append({"run": name, "recipe": "locked", "epochs": epochs["locked"], "teacher": "resnet20",
                                  "card": False, "ipc": 10})
        runs[ipc] = group
    return {"runs": runs, "evals": evals}


def estimate_hours(p: dict, a) -> float:
    encode = sum(10 * a.per_class for g in p["runs"].values() for n in g if n.startswith(("decode", "kcenter")))
    work = encode / ENCODE_IMAGES_PER_S
    for e in p["evals"]:
        students = a.seeds * (3 if e["card"] else 1)
        work += students * (e["epochs"] * 10 * e["ipc"] / TRAIN_IMAGES_PER_S + VAL_S)
    return work / a.jobs / 3600


def assets(shared: Path) -> tuple[Path, Path, str, str]:
    """(train folder, test folder, ResNet-20 teacher spec, TAEF2 codec spec) under ``shared``: the offline CIFAR-10
    setting every experiment here uses."""
    shared = Path(shared).resolve()
    return (shared / "data/cifar10/train", shared / "data/cifar10/test",
            f"cifar-resnet20:{shared / 'weights/cifar10-resnet/resnet20-12fca82f.th'}", f"taef2:{shared / 'weights/taef2'}")


class Runner:
    """Runs d4m commands, ``jobs`` at a time, each with its own log file and 2/jobs threads."""

    def __init__(self, out: Path, jobs: int):
        self.out, self.jobs, self.lock = out, jobs, threading.Lock()
        (out / "logs").mkdir(exist_ok=True)
        self.log = open(out / "experiment.log", "a", encoding="utf-8")
        self.env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // jobs))}

    def __call__(self, name: str, args: list[str], after: Future | None = None) -> None:
        if after is not None:
            after.result()
        with self.lock:
            print(f"start {name}", flush=True)
            self.log.write(f"$ d4m {shlex.join(args)}\n")
            self.log.flush()
        start = time.time()
        with open(self.out / "logs" / f"{name}.log", "a", encoding="utf-8") as out:
            proc = subprocess.run([sys.executable, "-m", "d4m", *args], stdout=out, stderr=subprocess.STDOUT,
                                  cwd=ROOT, env=self.env)
        with self.lock:
            self.log.write(f"# {name}: exit {proc.returncode} after {time.time() - start:.0f} s\n")
            self.log.flush()
            print(f"done  {name}: exit {proc.returncode} after {time.time() - start:.0f} s", flush=True)
        if proc.returncode:
            raise SystemExit(f"failed: d4m {shlex.join(args)} (see {self.out / 'logs' / name}.log)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "exp-c10"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=1000, help="images per class encoded for k-means / k-center")
    ap.add_argument("--paper-epochs", type=int, default=150, help="epochs at IPC 10 (scaled by 10/IPC)")
    ap.add_argument("--locked-epochs", type=int, default=150, help="epochs at IPC 10 (scaled by 10/IPC)")
    ap.add_argument("--generator", help="a `d4m generator train` output or a shipped one by name (cifar10-taef2): "
                                        "adds the Table-4 ablation rows")
    ap.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance for --generator")
    ap.add_argument("--jobs", type=int, default=2, help="d4m commands at once (2/JOBS threads each)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    shared = Path(a.shared).resolve()
    a.train, a.test = shared / "data/cifar10/train", shared / "data/cifar10/test"
    a.codec = f"taef2:{shared / 'weights/taef2'}"
    a.generator = Path(resolve_model(a.generator)).resolve() if a.generator else None  # a folder or a shipped name
    teachers = {"resnet20": f"cifar-resnet20:{shared / 'weights/cifar10-resnet/resnet20-12fca82f.th'}",
                "resnet56": f"cifar-resnet56:{shared / 'weights/cifar10-resnet/resnet56-4bfd9763.th'}"}
    a.epochs = {"paper": a.paper_epochs, "locked": a.locked_epochs}
    if a.smoke:
        a.seeds, a.per_class = 1, 20
    out = a.out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    p = plan(a)
    n_runs = sum(len(g) for g in p["runs"].values())
    print(f"plan: {n_runs} runs, {len(p['evals'])} evaluations x {a.seeds} seeds, {a.jobs} at once; expected time "
          f"on 2 CPU cores: about {estimate_hours(p, a):.1f} h (resumable: rerun to continue)", flush=True)
    val = ["--val", f"folder:{a.test}"] + (["--val-limit", "200"] if a.smoke else [])
    run = Runner(out, a.jobs)
    made: dict[str, Future] = {}
    with ThreadPoolExecutor(a.jobs) as pool:
        # runs of one IPC are queued before its evaluations, so a waiting evaluation never blocks its own run
        for ipc, group in p["runs"].items():
            for name, args in group.items():
                after = made.get("decode-online-ipc10") if args[0] == "synthesize" else None
                made[name] = pool.submit(run, name, args + ["--out", str(out / name), "--workers", "0"], after)
            for e in (e for e in p["evals"] if e["ipc"] == ipc):
                args = ["evaluate", "--run", str(out / e["run"]), "--teacher", teachers[e["teacher"]], "--student",
                        "convnet-w128", "--recipe", e["recipe"], "--epochs", str(e["epochs"]), "--seeds",
                        str(a.seeds), "--eval-every", str(e["epochs"]),
                        "--out", str(out / e["run"] / f"eval-{e['teacher']}"), *val, *(["--card"] if e["card"] else [])]
                e["future"] = pool.submit(run, f"eval-{e['run']}-{e['recipe']}-{e['teacher']}", args, made[e["run"]])
        for e in p["evals"]:
            e.pop("future").result()
    for ipc, group in p["runs"].items():
        for name in group:
            if ipc == 10:
                run(f"report-{name}", ["report", "--run", str(out / name), "--teacher", teachers["resnet20"]])
    write_results(out, p, a)
    return 0


def ms(x: dict | None) -> str:
    """A summary's {mean, std} as "mean ± std" (two decimals), or "-" when missing."""
    return "-" if not x or x.get("mean") is None else f"{x['mean']:.2f} ± {x['std']:.2f}"


def write_results(out: Path, p: dict, a) -> None:
    rows = []
    for e in p["evals"]:
        folder = out / e["run"] / f"eval-{e['teacher']}" / "convnet-w128" / e["recipe"]
        summary = json.loads((folder / "summary.json").read_text())
        card = json.loads((folder / "card.json").read_text()) if (folder / "card.json").is_file() else None
        rows.append({**e, "top1": summary["last_epoch_top1"], "best": summary["best_epoch_top1"], "card": card})
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    lines = ["| method | IPC | recipe (epochs) | teacher | top-1 last epoch | best epoch | card: random real | "
             "card: hard labels | IOR | HLR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["card"] or {}
        lines.append(f"| {r['run'].rsplit('-ipc', 1)[0]} | {r['ipc']} | {r['recipe']} ({r['epochs']}) | "
                     f"{r['teacher']} | {ms(r['top1'])} | {ms(r['best'])} | {ms(c.get('random'))} | "
                     f"{ms(c.get('hard'))} | {c.get('IOR', '-')} | {c.get('HLR', '-')} |")
    lines += ["", *cost_table(out, [n for g in p["runs"].values() for n in g])]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cost_table(out: Path, names: list[str]) -> list[str]:
    """Each run's stages from its log.jsonl: total wall time, count, throughput and peak memory (CPU RSS)."""
    lines = ["| run | stage | times run | wall s (total) | throughput | peak RSS MB |", "|---|---|---|---|---|---|"]
    for name in names:
        stages: dict[str, list[dict]] = {}
        for rec in read_jsonl(out / name / "log.jsonl", strict=False):
            if not rec.get("images", rec.get("image_epochs", 1)):
                continue  # a resumed stage that found its work done
            key = rec["stage"].split(" seed")[0] + (f" ({rec['recipe']})" if "recipe" in rec else "")
            key += f" [{Path(rec['labels']).name}]" if "labels" in rec else ""
            stages.setdefault(key, []).append(rec)
        for key, recs in stages.items():
            unit = next(k for k in recs[-1] if k.endswith("_per_s"))
            rate = sum(r[unit] for r in recs) / len(recs)
            lines.append(f"| {name} | {key} | {len(recs)} | {sum(r['wall_s'] for r in recs):.0f} | "
                         f"{rate:.1f} {unit[:-6].replace('_', '-')}/s | "
                         f"{max(r.get('cpu_peak_rss_mb', 0) for r in recs):.0f} |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
