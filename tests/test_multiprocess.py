"""Two CPU processes (torchrun, gloo) write the same bytes as one."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_outputs

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
