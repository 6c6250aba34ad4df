"""Do the teacher trainer's defaults train every registered architecture? (issue 25, the RESULTS table)

    python experiments/teacher_table.py --data /tmp/d4m-teacher-data/cifar10-100 [--epochs 4] [--size 32]
        [--batch-size 32] [--archs convnet-w128 ...] [--out runs/teacher-table] [--timeout 600]

For each architecture of ``d4m.models.MODELS`` (or ``--archs``): ``d4m teacher train`` with the default recipe on
``<data>/train`` (folder), validated on ``<data>/test`` (``--val``), one CPU thread, ``--allow-weak`` so that a
weak result is recorded rather than refused. Make the folders with ``experiments/teacher_data.py``. Each run's
command, CPU and wall time, final val top-1 (%), top-class share and the trainer's verdict go to ``<out>/results.jsonl``;
a rerun skips finished runs. Prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(arch: str, data: Path, out: Path, epochs: int, size: int, batch: int, timeout: int) -> dict:
    ckpt = out / f"{data.name}-{arch}.safetensors"
    cmd = [sys.executable, "-m", "d4m", "teacher", "train", "--data", f"folder:{data}/train", "--val",
           f"folder:{data}/test", "--arch", arch, "--epochs", str(epochs), "--size", str(size), "--batch-size",
           str(batch), "--device", "cpu", "--out", str(ckpt), "--allow-weak"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}
    t0, cpu0 = time.perf_counter(), _children_cpu()
    row = {"arch": arch, "data": data.name, "epochs": epochs, "size": size, "batch_size": batch,
           "command": "OMP_NUM_THREADS=1 d4m " + " ".join(cmd[3:])}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timed out after {timeout} s"}
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["cpu_s"] = round(_children_cpu() - cpu0, 1)
    if proc.returncode != 0:
        return {**row, "status": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:200]}"}
    from d4m.models import read_checkpoint

    meta = read_checkpoint(ckpt)[1]
    last = meta["history"][-1]
    return {**row, "status": "ok", "val_top1": meta["val_top1"], "train_top1": last.get("train_top1"),
            "top_class_share": last.get("val_top_class_share"), "weak": meta.get("weak"),
            "history_val": [h.get("val_top1") for h in meta["history"]]}


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def table(rows: list[dict]) -> str:
    lines = ["| data | architecture | val top-1 % (per epoch) | largest predicted class % | verdict | CPU s | wall s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['data']} | {r['arch']} | - | - | {r['status']} | - | - |")
            continue
        verdict = "weak: " + r["weak"] if r["weak"] else "ok"
        curve = " / ".join(f"{v:.1f}" for v in r["history_val"])
        lines.append(f"| {r['data']} | {r['arch']} | **{r['val_top1']:.2f}** ({curve}) | {r['top_class_share']:.1f} "
                     f"| {verdict} | {r['cpu_s']:.0f} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from d4m.models import MODELS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, nargs="+", help="folders holding train/ and test/ class folders")
    ap.add_argument("--archs", nargs="+", default=list(MODELS))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "runs" / "teacher-table"))
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    for data in map(Path, args.data):
        for arch in args.archs:
            if any(r["arch"] == arch and r["data"] == data.name and r["epochs"] == args.epochs for r in done):
                continue
            row = run_one(arch, data, out, args.epochs, args.size, args.batch_size, args.timeout)
            print(json.dumps(row), flush=True)
            done.append(row)
            with open(log, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print(table([r for r in done if r["epochs"] == args.epochs]))


if __name__ == "__main__":
    main()
