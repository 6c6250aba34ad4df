"""``d4m report``: the HTML page with inlined figures, checked in headless Chromium (skipped only without it)."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from d4m.cli.main import main
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def run(tmp_path_factory, cifar_subset):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "3",
                 "--out", str(out)]) == 0
    card = {"student": "convnet-w128", "recipe": "locked", "epochs": 2, "teacher": "t", "seeds": 1, "val_limit": None,
            "metric": "last-epoch top-1 %", "soft": {"mean": 40.0, "std": 0.0}, "random": {"mean": 35.5, "std": 0.0},
            "hard": {"mean": 20.0, "std": 0.0}, "full": {"mean": 91.7, "source": "test"}, "IOR": 4.5, "HLR": 71.7}
    (out / "eval" / "convnet-w128" / "locked").mkdir(parents=True)
    (out / "eval" / "convnet-w128" / "locked" / "card.json").write_text(json.dumps(card))
    return out


def test_report_without_teacher_notes_the_missing_panel(run):
    assert main(["report", "--run", str(run), "--real-per-class", "5"]) == 0
    page = (run / "report" / "report.html").read_text()
    assert "Skipped: no --teacher" in page and "data:image/png;base64," in page
    assert "71.7" in page and "select-random" in page  # the card and the stage log
    grid = Image.open(run / "report" / "grid.png")
    assert 700 < grid.size[0] < 800 and 850 < grid.size[1] < 950  # 3 distilled + gap + 3 real columns, 10 rows


def test_report_with_teacher_in_chromium(run, tmp_path):
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    assert main(["report", "--run", str(run), "--teacher", teacher, "--real-per-class", "6"]) == 0
    page = run / "report" / "report.html"
    assert (run / "report" / "tsne.png").is_file() and "Skipped" not in page.read_text()
    assert page.read_text().count("data:image/png;base64,") == 2
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium not installed")
    shot = tmp_path / "out.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    page.resolve().as_uri()], check=True, timeout=120, capture_output=True)
    arr = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert arr.shape == (2000, 1200)
    assert arr.std() > 20  # not blank: text, tables and pictures
    assert (arr < 100).mean() > 0.01  # the figures' dark pixels rendered


def test_report_names_wnid_classes_with_their_label_text(tmp_path, monkeypatch):
    """Tiny-ImageNet / ImageNet runs: 'n01443537 goldfish' in the grid, the t-SNE legend and the classes table."""
    import d4m.report.build as build
    from tests.ttm_helpers import make_folder, seal_run, tiny_teacher_file

    wnids = ["n01443537", "n01629819", "n01641577"]
    run = tmp_path / "run"
    make_folder(run / "images", classes=wnids, per_class=3, size=16)
    seal_run(run)
    teacher = f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors', classes=wnids)}"
    seen = {}

    def spy(name, position):
        real = getattr(build, name)

        def wrapper(*args, **kwargs):
            seen[name] = args[position]  # the class names the figure writes
            return real(*args, **kwargs)
        monkeypatch.setattr(build, name, wrapper)
    spy("image_grid", 2)
    spy("tsne_figure", 3)
    assert main(["report", "--run", str(run), "--teacher", teacher]) == 0
    expected = ["n01443537 goldfish", "n01629819 European fire salamander", "n01641577 bullfrog"]
    assert seen["image_grid"] == expected and seen["tsne_figure"] == expected
    page = (run / "report" / "report.html").read_text()
    assert "<td>n01629819</td><td>European fire salamander, Salamandra salamandra</td><td>3</td>" in page
