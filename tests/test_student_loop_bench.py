"""bench/student_loop.py (issue 21) runs end to end in --smoke mode on real CIFAR-10 images and prints its ratios."""

import importlib
import sys
from pathlib import Path

from tests.conftest import shared_path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_student_loop_smoke(capsys):
    shared = shared_path("data", "cifar10").parents[1]
    sys.path.insert(0, str(BENCH))
    try:
        module = importlib.import_module("student_loop")
        result = BENCH / "results" / "student_loop.json"
        before = result.stat().st_mtime if result.exists() else None
        assert module.main(["--smoke", "--shared", str(shared)]) == 0
    finally:
        sys.path.remove(str(BENCH))
    out = capsys.readouterr().out
    assert "RATIO 1000-epoch student" in out and "compute floor" in out
    assert (result.stat().st_mtime if result.exists() else None) == before  # smoke never overwrites results
