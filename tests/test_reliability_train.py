"""Kill -9 during relabel + evaluate, rerun the same command: the same labels and the same metrics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]


def _subset(src: Path, dst: Path, per_class: int) -> Path:
    for cls in sorted(p.name for p in src.iterdir()):
        (dst / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:per_class]:
            (dst / cls / f.name).symlink_to(f)
    return dst


def _run(args, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "d4m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
    return proc


def _metrics(out: Path) -> dict:
    data = json.loads((out / "convnet-w128" / "locked" / "seed0" / "metrics.json").read_text())

    def untimed(d):
        return {k: v for k, v in d.items() if not k.endswith("_s") and "time" not in k and "wall" not in k}

    data = untimed(data)
    data["history"] = [untimed(h) for h in data.get("history", [])]
    assert data["history"], "metrics.json has no per-epoch history"
    return data


def test_kill_during_training_resumes_from_last_epoch(tmp_path):
    teacher = shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    images = _subset(shared_path("data", "cifar10", "train"), tmp_path / "images", 2)
    val = _subset(shared_path("data", "cifar10", "test"), tmp_path / "val", 5)
    args = ["evaluate", "--images", str(images), "--teacher", f"cifar-resnet20:{teacher}", "--student",
            "convnet-w128", "--val", f"folder:{val}", "--recipe", "locked", "--epochs", "8", "--seeds", "1",
            "--device", "cpu"]
    _run(args + ["--out", str(tmp_path / "clean")])
    killed = tmp_path / "killed"
    proc = _run(args + ["--out", str(killed)], wait=False)
    ckpt = killed / "convnet-w128" / "locked" / "seed0" / "checkpoint.pt"
    deadline = time.time() + 600
    while not ckpt.exists():  # the first epoch checkpoint exists: training is under way
        assert proc.poll() is None and time.time() < deadline, "evaluate ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "convnet-w128" / "locked" / "summary.json").exists()
    _run(args + ["--out", str(killed)])
    assert _metrics(killed) == _metrics(tmp_path / "clean")
    labels_clean = sorted((tmp_path / "clean" / "labels").rglob("epoch_*.safetensors"))
    labels_killed = sorted((killed / "labels").rglob("epoch_*.safetensors"))
    assert [p.read_bytes() for p in labels_clean] == [p.read_bytes() for p in labels_killed]
    assert len(labels_clean) == 8


def test_kill_during_teacher_training_resumes_identically(tmp_path):
    data = _subset(shared_path("data", "cifar10", "train"), tmp_path / "data", 6)
    args = ["teacher", "train", "--data", f"folder:{data}", "--arch", "convnet-w128", "--epochs", "6",
            "--batch-size", "16", "--device", "cpu", "--allow-weak"]  # 60 images: weak or not, it must resume
    _run(args + ["--out", str(tmp_path / "clean.safetensors")])
    out = tmp_path / "killed.safetensors"
    proc = _run(args + ["--out", str(out)], wait=False)
    state = Path(str(out) + ".train.pt")
    deadline = time.time() + 600
    while not state.exists():
        assert proc.poll() is None and time.time() < deadline, "teacher training ended before its first epoch"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    _run(args + ["--out", str(out)])
    from safetensors.torch import load_file

    clean, resumed = load_file(tmp_path / "clean.safetensors"), load_file(out)
    assert clean.keys() == resumed.keys() and all(torch.equal(clean[k], resumed[k]) for k in clean)
    assert not state.exists()
