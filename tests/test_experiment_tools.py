"""The analysis scripts RESULTS.md quotes (experiments/*.py) run on small real runs and measure what they say."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

from d4m.cli.main import main
from tests.conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_laplacian_variance_orders_flat_blur_and_edges(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        from sharpness import laplacian_variance
    finally:
        sys.path.pop(0)
    flat, edges = Image.new("L", (32, 32), 128), Image.new("L", (32, 32), 0)
    edges.paste(255, (0, 0, 16, 32))
    blurred = edges.resize((8, 8), Image.BILINEAR).resize((32, 32), Image.BILINEAR)
    values = []
    for name, img in (("flat", flat), ("blur", blurred), ("edges", edges)):
        img.save(tmp_path / f"{name}.png")
        values.append(laplacian_variance(tmp_path / f"{name}.png"))
    assert values[0] == 0.0 and 0.0 < values[1] < values[2]


def test_sharpness_agreement_and_grid(tmp_path, cifar_subset):
    taef2 = shared_path("weights", "taef2")
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    rnd, dec = tmp_path / "random-ipc10", tmp_path / "decode-ipc10"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "2",
                 "--out", str(rnd)]) == 0
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--codec", f"taef2:{taef2}",
                 "--generator", "none", "--size", "32", "--out", str(dec), "--workers", "0"]) == 0

    out = _script("sharpness.py", str(rnd), str(dec))
    lines = out.strip().splitlines()
    assert lines[0].startswith("random-ipc10: 20 images, sharpness median")
    assert "latents per prototype min" in lines[1] and "Spearman" in lines[1]
    assert all(float(line.split("sharpness median ")[1].split(";")[0]) > 0 for line in lines)

    table = _script("teacher_agreement.py", teacher, str(rnd), "--crops", "2")
    row = next(line for line in table.splitlines() if line.startswith("| random-ipc10"))
    whole = float(row.split("|")[3].strip().rstrip("%"))
    assert whole >= 50.0  # the ResNet-20 names most real training photographs

    grid = tmp_path / "grid.png"
    _script("method_grid.py", str(grid), str(rnd), str(dec), "--per-class", "2")
    assert Image.open(grid).size == (2 * (2 * 33 + 1) + 6, 10 * 33 + 13)
