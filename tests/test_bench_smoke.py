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


def test_drill_smoke_kills_and_reruns_to_identical_outputs(bench_path, tmp_path, capsys):
    """The many-class drill end to end at 3 classes: two processes, one SIGKILL per drilled command, reruns, and
    the byte-identical check against the clean run (minutes: a dozen d4m start-ups)."""
    from tests.conftest import shared_path

    codec = shared_path("weights", "taef2")
    drill = importlib.import_module("drill")
    before = (BENCH / "results" / "drill.json").read_bytes() if (BENCH / "results" / "drill.json").is_file() else None
    result = drill.main(["--smoke", "--work", str(tmp_path), "--codec", f"taef2:{codec}"])
    assert "DRILL OK" in capsys.readouterr().out
    row = result["rows"][0]
    assert row["classes"] == 3 and all(row["identical_after_kills"].values())
    assert row["prototypes_images_per_s"] and (tmp_path / "clean-3" / "export" / "state.json").is_file()
    after = (BENCH / "results" / "drill.json").read_bytes() if (BENCH / "results" / "drill.json").is_file() else None
    assert after == before  # smoke runs never overwrite measured results


def test_drill_dataset_and_report(bench_path, tmp_path):
    import numpy as np

    drill = importlib.import_module("drill")
    report = importlib.import_module("report")
    root = drill.make_dataset(tmp_path / "d", classes=12, per_class=2, size=8)
    train = sorted(p.name for p in (root / "train").iterdir())
    assert train == [f"c{c:04d}" for c in range(12)] and len(list((root / "val").rglob("*.png"))) == 24
    rows = [{"classes": n, "images": 2 * n, "wall_s": {"distill": 5 + 0.5 * n, "relabel": 1, "evaluate": 2,
                                                       "export": 1, "report": 1},
             "prototypes_images_per_s": 10, "synthesis_images_per_s": 20, "stage_peak_rss_mb": {"prototypes": 300},
             "kills": {"distill": 2, "relabel": 1}, "identical_after_kills": {"distill": True, "relabel": True}}
            for n in (10, 30, 100)]
    assert np.isclose(drill.per_class_overhead(rows), 0.5)
    settings = {"per_class": 2, "image_size": 8, "nproc": 2, "size": 32, "ipc": 1, "epochs": 1, "kills": 2}
    text = "\n".join(report.drill({"command": "python bench/drill.py", "settings": settings, "rows": rows,
                                   "per_class_overhead_s": 0.5}))
    assert "| 100 | 200 | 55.0 |" in text and "0.500 s per class" in text
