"""Two CPU processes (torchrun, gloo) write the same bytes as one."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_outputs, shared_path

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_distill_is_byte_identical(tmp_path, tiny_sd, cifar_subset):
    args = ["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--model", str(tiny_sd), "--size", "64",
            "--steps", "6", "--batch-size", "4", "--workers", "0"]
    one, two = tmp_path / "one", tmp_path / "two"
    # CPU float results may depend on the intra-op thread count, so both runs use one thread per process
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "d4m", *args, "--out", str(one), "--device", "cpu"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "d4m",
                           *args, "--out", str(two), "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = run_outputs(one), run_outputs(two)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    ranks = {line.split('"pid": ')[1].split(",")[0] for line in (two / "log.jsonl").read_text().splitlines()}
    assert len(ranks) == 2  # both processes did work and logged it


def test_two_process_evaluate_matches_one(tmp_path):
    teacher = shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    images, val = tmp_path / "images", tmp_path / "val"
    for dst, split, n in ((images, "train", 2), (val, "test", 3)):
        src = shared_path("data", "cifar10", split)
        for cls in sorted(p.name for p in src.iterdir()):
            (dst / cls).mkdir(parents=True)
            for f in sorted((src / cls).iterdir())[:n]:
                (dst / cls / f.name).symlink_to(f)
    args = ["evaluate", "--images", str(images), "--teacher", f"cifar-resnet20:{teacher}", "--val", f"folder:{val}",
            "--recipe", "locked", "--epochs", "3", "--seeds", "2", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    for launcher, out in (([], "one"), (["-m", "torch.distributed.run", "--nproc-per-node", "2"], "two")):
        cmd = [sys.executable, *launcher, "-m", "d4m", *args, "--out", str(tmp_path / out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = (json.loads((tmp_path / o / "convnet-w128" / "locked" / "summary.json").read_text())
                for o in ("one", "two"))
    assert one["per_seed"] == two["per_seed"] and one["last_epoch_top1"] == two["last_epoch_top1"]
    labels = [sorted((tmp_path / o / "labels").rglob("epoch_*.safetensors")) for o in ("one", "two")]
    assert len(labels[0]) == 3 and [p.read_bytes() for p in labels[0]] == [p.read_bytes() for p in labels[1]]
    pids = {json.loads(line)["pid"] for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()}
    assert len(pids) == 2  # both processes trained or relabelled
