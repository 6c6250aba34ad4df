"""Every benchmark in bench/ runs end to end in its tiny --smoke mode and prints its ratio lines.

No timing is asserted: smoke numbers are meaningless, only the plumbing (d4m API calls, baselines, report) is checked.
"""

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_path():
    sys.path.insert(0, str(BENCH))
    yield
    sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name", ["synthesis", "kmeans", "storage", "memory", "synthesis_flops"])
def test_benchmark_smoke_prints_ratio(bench_path, name, capsys):
    module = importlib.import_module(name)
    before = {p: p.stat().st_mtime for p in (BENCH / "results").glob("*.json")} if (BENCH / "results").is_dir() else {}
    module.main(["--smoke"])
    out = capsys.readouterr().out
    assert "RATIO " in out, out
    after = {p: p.stat().st_mtime for p in (BENCH / "results").glob("*.json")} if (BENCH / "results").is_dir() else {}
    assert after == before  # smoke runs never overwrite measured results


def test_gpu_mode_fails_clearly_without_cuda(bench_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    synthesis = importlib.import_module("synthesis")
    with pytest.raises(SystemExit, match="no CUDA device"):
        synthesis.main(["--gpu"])


def test_report_renders_without_results(bench_path, tmp_path, monkeypatch):
    report = importlib.import_module("report")
    monkeypatch.setattr(report, "HERE", tmp_path)
    text = report.render()
    assert text.startswith("# d4m benchmarks") and "(not run)" in text


def test_main_job_benchmark_smoke(bench_path, capsys):
    """bench/main_job.py: the embedded main job and its parts, tiny; needs ../shared's JPEGs and TAEF2 files."""
    from tests.conftest import shared_path

    shared = shared_path("weights", "taef2").parents[1]
    module = importlib.import_module("main_job")
    before = (BENCH / "results" / "main_job.json").stat().st_mtime if (BENCH / "results" / "main_job.json").is_file() \
        else None
    module.main(["--smoke", "--shared", str(shared)])
    out = capsys.readouterr().out
    assert "RATIO encoder images/s vs its FLOP bound" in out and "expected time about" in out, out
    after = (BENCH / "results" / "main_job.json").stat().st_mtime if (BENCH / "results" / "main_job.json").is_file() \
        else None
    assert after == before
