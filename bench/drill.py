"""The many-class drill (issue 22, rule 6): the whole pipeline on a synthetic ImageNet-shaped folder dataset under two
processes, killed with SIGKILL at random moments and rerun, checked byte-identical to a clean run.

Per class count (e.g. 100 / 300 / 1000 classes of ``--per-class`` tiny PNGs each):
  1. a seeded synthetic dataset (``train/NNNN_cNNNN/*.png`` and ``val/...``), coloured noise per class;
  2. a clean run under ``torchrun --nproc-per-node 2 --no-python d4m``: distill on the decode path (TAEF2,
     ``--generator none``), select random, teacher train (1 epoch, the soft-label source), relabel, evaluate
     (``--epochs`` epochs), export (hf), report; time and peak RSS per command;
  3. the drill: distill and relabel again into new folders, each killed (``kill -9`` of the process group) at a random
     moment ``--kills`` times and rerun until it finishes; the outputs (images, prototypes, manifest; label files)
     must be byte-identical to the clean run's.
Results go to ``bench/results/drill.json`` (``--smoke``: a temporary folder, nothing recorded) and render into
BENCHMARKS.md's drill section (``python bench/report.py``).

    python bench/drill.py --classes 100,300,1000 --per-class 20      # the full drill
    python bench/drill.py --smoke                                      # minutes: 2 sizes of a few classes
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine  # noqa: E402


def make_dataset(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """``root/train`` and ``root/val``: per class a base colour plus seeded noise (rerunnable: skipped if there)."""
    done = root / ".complete"
    if done.is_file() and done.read_text() == f"{classes} {per_class} {size} {seed}":
        return root
    rng = np.random.default_rng(seed)
    width = max(4, len(str(classes - 1)))
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            folder = root / split / f"c{c:0{width}d}"  # sorted names = class order
            folder.mkdir(parents=True, exist_ok=True)
            base = rng.integers(0, 256, 3)
            for i in range(n):
                noise = rng.integers(-40, 41, (size, size, 3))
                img = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i:03d}.png")
    done.write_text(f"{classes} {per_class} {size} {seed}")
    return root


def children_peak_rss_mb() -> float:
    """Largest peak RSS of any finished child process so far (torchrun's workers included once reaped)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): torchrun's workers leave its process group, so a kill of the group
    alone would leave them waiting for a rendezvous that never comes."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def d4m(args: list[str], nproc: int, env: dict, kill_after: float | None = None,
        log: Path | None = None) -> tuple[int, float]:
    """Run ``d4m ARGS`` (under torchrun when ``nproc`` > 1); with ``kill_after``, SIGKILL it and every process
    below it then. Returns (exit status, wall seconds)."""
    # "--": torchrun would read d4m's --run as an abbreviation of its own --run-path
    cmd = (["torchrun", "--nproc-per-node", str(nproc), "--no-python", "--", "d4m"] if nproc > 1 else ["d4m"]) + args
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a stray child can never block the drill
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err,
                                text=True)
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            victims = descendants(proc.pid) + [proc.pid]
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
            time.sleep(0.5)  # let the kernel reap the workers (reparented to init)
            return -9, time.perf_counter() - t0
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"drill: `{' '.join(cmd)}` failed ({proc.returncode}):\n{err.read()[-3000:]}")
    return proc.returncode, time.perf_counter() - t0


def outputs(folder: Path, parts: tuple[str, ...]) -> dict[str, bytes]:
    """Bytes of the files a user trusts under ``folder`` (``parts``: sub-folders or files), with the folder's own
    path written as RUN (the label set's meta.json names the images folder it was made from)."""
    files = {}
    for part in parts:
        p = folder / part
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []):
            files[f.relative_to(folder).as_posix()] = f.read_bytes().replace(str(folder).encode(), b"RUN")
    return files


def stage_rows(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def drill_one(work: Path, classes: int, per_class: int, args, env: dict, rng: random.Random) -> dict:
    data = make_dataset(work / f"data-{classes}", classes, per_class, args.image_size)
    train, val = f"folder:{data / 'train'}", f"folder:{data / 'val'}"
    distill = ["distill", "--data", train, "--codec", args.codec, "--generator", "none", "--size", str(args.size),
               "--ipc", str(args.ipc), "--workers", "0", "--device", "cpu"]
    teacher = work / f"teacher-{classes}.safetensors"
    clean = work / f"clean-{classes}"
    times, rss = {}, {}
    steps = [("distill", distill + ["--out", str(clean / "run")], args.nproc),
             ("select", ["select", "--method", "random", "--data", train, "--ipc", str(args.ipc),
                         "--out", str(clean / "random")], 1),
             ("teacher train", ["teacher", "train", "--data", train, "--arch", "convnet-w128", "--epochs", "1",
                                "--size", str(args.image_size), "--device", "cpu", "--out", str(teacher),
                                "--allow-weak"], 1),  # one epoch on noise: weak by design, only a label source
             ("relabel", ["relabel", "--run", str(clean / "run"), "--teacher", f"checkpoint:{teacher}",
                          "--epochs", str(args.epochs), "--recipe", "locked", "--device", "cpu"], args.nproc),
             ("evaluate", ["evaluate", "--run", str(clean / "run"), "--teacher", f"checkpoint:{teacher}",
                           "--val", val, "--student", "convnet-w128", "--recipe", "locked", "--epochs",
                           str(args.epochs), "--seeds", str(args.nproc), "--device", "cpu"], args.nproc),
             ("export", ["export", "--run", str(clean / "run"), "--to", "hf", str(clean / "export")], 1),
             ("report", ["report", "--run", str(clean / "run"), "--classes", "4", "--per-class", "2",
                         "--real-per-class", "2", "--device", "cpu"], 1)]
    for name, argv, nproc in steps:
        before = children_peak_rss_mb()
        _, times[name] = d4m(argv, nproc, env)
        rss[name] = round(max(children_peak_rss_mb(), before), 1)
        print(f"  {classes} classes: {name} {times[name]:.1f} s", flush=True)
    rows = {r["stage"]: r for r in stage_rows(clean / "run")}
    want_run = ("images", "prototypes.safetensors", "manifest.jsonl")
    reference = {"distill": outputs(clean / "run", want_run),
                 "relabel": outputs(clean / "run", ("labels",))}
    kills = {"distill": 0, "relabel": 0}
    identical = {}
    # the drill: kill each at random moments (within its clean wall time), rerun until it finishes
    drilled = work / f"drill-{classes}"
    for name in ("distill", "relabel"):
        argv = (distill + ["--out", str(drilled / "run")]) if name == "distill" else \
            ["relabel", "--run", str(drilled / "run"), "--teacher", f"checkpoint:{teacher}",
             "--epochs", str(args.epochs), "--recipe", "locked", "--device", "cpu"]
        for _ in range(args.kills):
            rc, _ = d4m(argv, args.nproc, env, kill_after=rng.uniform(0.15, 0.9) * times[name])
            kills[name] += rc == -9
            if rc == 0:
                break
        d4m(argv, args.nproc, env)  # the rerun that finishes (a no-op resume if the last try already had)
        parts = want_run if name == "distill" else ("labels",)
        got = outputs(drilled / "run", parts)
        identical[name] = got == reference[name]
        if not identical[name]:
            diff = sorted(k for k in set(got) | set(reference[name]) if got.get(k) != reference[name].get(k))
            print(f"  {classes} classes: {name} differs after kills: {diff[:5]}", flush=True)
    return {"classes": classes, "per_class": per_class, "images": classes * per_class, "wall_s": times,
            "peak_rss_mb": rss, "prototypes_images_per_s": rows.get("prototypes", {}).get("images_per_s"),
            "synthesis_images_per_s": rows.get("synthesis", {}).get("images_per_s"),
            "stage_peak_rss_mb": {k: r.get("cpu_peak_rss_mb") for k, r in rows.items()},
            "kills": kills, "identical_after_kills": identical}


def per_class_overhead(rows: list[dict], stage: str = "distill") -> float | None:
    """Seconds per class of ``stage``: the slope of a least-squares line of wall time against classes."""
    if len(rows) < 2:
        return None
    x = np.array([r["classes"] for r in rows], float)
    y = np.array([r["wall_s"][stage] for r in rows], float)
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", default="100,300,1000", help="class counts, comma-separated")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--image-size", type=int, default=16, help="px of the synthetic source images")
    p.add_argument("--size", type=int, default=32, help="d4m's --size (encode resolution)")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--kills", type=int, default=2, help="SIGKILLs per drilled command")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--codec", default=f"taef2:{ROOT.parent / 'shared' / 'weights' / 'taef2'}")
    p.add_argument("--work", help="working folder (default: a temporary one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="3 classes of 3 images, one kill; nothing recorded")
    args = p.parse_args(argv)
    if args.smoke:
        args.classes, args.per_class, args.kills = "3", 3, 1
    counts = [int(c) for c in args.classes.split(",")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="d4m-drill-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for n in counts:
            t0 = time.perf_counter()
            rows.append(drill_one(work, n, args.per_class, args, env, rng))
            rows[-1]["total_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(rows[-1]), flush=True)
    result = {"machine": machine(), "command": "python bench/drill.py " + " ".join(argv if argv is not None
                                                                                  else sys.argv[1:]),
              "settings": {k: v for k, v in vars(args).items() if k not in ("work",)}, "rows": rows,
              "per_class_overhead_s": per_class_overhead(rows)}
    ok = all(all(r["identical_after_kills"].values()) for r in rows)
    print(f"DRILL {'OK' if ok else 'FAILED'}: outputs identical after kills: {ok}; "
          f"per-class distill overhead {result['per_class_overhead_s']}")
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "drill.json").write_text(json.dumps(result, indent=1) + "\n")
    if not ok:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
