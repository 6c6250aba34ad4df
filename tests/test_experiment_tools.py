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


def test_generator_ablation_picks_the_best_cell_and_tabulates(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import generator_ablation as ga
    finally:
        sys.path.pop(0)
    import argparse
    import json

    def put(name, tops, hard=None):
        folder = tmp_path / name / "eval" / "convnet-w128" / "locked"
        folder.mkdir(parents=True)
        mean = sum(tops) / len(tops)
        (folder / "summary.json").write_text(json.dumps({
            "seeds": len(tops), "last_epoch_top1": {"mean": mean, "std": 0.5},
            "per_seed": [{"seed": k, "last_top1": t} for k, t in enumerate(tops)]}))
        if hard is not None:
            (folder / "card.json").write_text(json.dumps({"random": {"mean": 30.0, "std": 0.4},
                                                          "hard": {"mean": hard, "std": 0.3}, "IOR": mean - 30.0}))

    a = argparse.Namespace(strengths=[0.5, 0.7], guidance=[2.0, 8.0])
    put("d4m-s0.5-g2", [20.0])
    put("d4m-s0.7-g2", [21.0])
    put("d4m-s0.5-g8", [24.0, 25.0, 26.0], hard=31.0)
    with __import__("pytest").raises(SystemExit, match="d4m-s0.7-g8"):
        ga.best_cell(tmp_path, a)  # one cell missing: no pick from a partial grid
    put("d4m-s0.7-g8", [23.0])
    assert ga.best_cell(tmp_path, a) == (0.5, 8.0)
    ga.write_results(tmp_path, a)
    md = (tmp_path / "results.md").read_text()
    assert "| 0.5 | 20.00 | 24.00 |" in md and "| 0.7 | 21.00 | 23.00 |" in md  # seed 0 of each cell
    assert "| d4m-s0.5-g8 | 25.00 ± 0.50 | 30.00 ± 0.40 | 31.00 ± 0.30 | -5.0 |" in md
    assert "d4m-s0.7-g8 |" not in md.split("| images")[1]  # one-seed cells stay out of the table


def test_val_pick_holds_out_the_pool_and_scores_students_on_the_split(tmp_path, cifar_subset):
    import json

    import torch

    from d4m.data import open_dataset
    from d4m.evaluate.val import ValSet
    from d4m.models import create_model, load_teacher
    from d4m.models.teachers import save_checkpoint

    data = open_dataset(f"folder:{cifar_subset}", "train")
    taken = data.describe(data.indices_of(3)[-1])  # an image a run used (its manifest's source)
    runs = []
    for name, seed_tops in (("d4m-a", [11.0]), ("d4m-b", [12.0, 13.0]), ("random-real", [30.0])):
        run = tmp_path / name
        run.mkdir()
        (run / "manifest.jsonl").write_text(json.dumps({"source": taken}) + "\n")
        for k, top in enumerate(seed_tops):
            seed_dir = run / "eval" / "convnet-w128" / "locked" / f"seed{k}"
            seed_dir.mkdir(parents=True)
            torch.manual_seed(len(runs) * 10 + k)
            save_checkpoint(seed_dir / "student.safetensors", create_model("convnet-w128", 10, 32), "convnet-w128",
                            data.classes, 32)
            (seed_dir / "metrics.json").write_text(json.dumps({"last_top1": top}))
        runs.append(str(run))
    split = tmp_path / "split"
    out = _script("val_pick.py", "--data", f"folder:{cifar_subset}", "--split-dir", str(split), "--per-class", "8",
                  "--exclude-pool", "10", "--json", str(tmp_path / "rows.json"), *runs)
    files = sorted(p for p in split.rglob("*.jpg"))
    assert len(files) == 80 and all(p.is_symlink() for p in files)
    from d4m.seeding import cpu_generator

    sources = {p.resolve() for p in files}
    assert Path(taken).resolve() not in sources
    for c in range(10):  # none of the first 10 images of the prototype stage's order (the pool)
        idx = data.indices_of(c)
        order = torch.randperm(len(idx), generator=cpu_generator(0, "order", c)).tolist()
        assert not {Path(data.describe(idx[j])).resolve() for j in order[:10]} & sources
    rows = {r["run"]: r for r in json.loads((tmp_path / "rows.json").read_text())}
    val = ValSet(f"folder:{split}", 32)
    ckpt = tmp_path / "d4m-b" / "eval" / "convnet-w128" / "locked" / "seed1" / "student.safetensors"
    student = load_teacher(f"checkpoint:{ckpt}", classes=val.classes)
    assert rows["d4m-b"]["val_all"][1] == val.top1(student.model, columns=student.columns)
    assert rows["d4m-b"]["test_all"] == [12.0, 13.0] and rows["d4m-b"]["seeds"] == 2
    first = "d4m-b" if rows["d4m-b"]["val_all"][0] > rows["d4m-a"]["val_all"][0] else "d4m-a"  # max keeps the first
    assert f"first on val (seed 0, recipe locked): {first} " in out  # random-real is not ranked
    assert "first on test (seed 0, recipe locked): d4m-b (12.00)" in out


def test_loss_curves_cut_every_run_at_the_sample_budget(tmp_path):
    import json

    runs = []
    for name, pred, steps in (("short", "epsilon", 4), ("long", "v_prediction", 10)):
        run = tmp_path / name
        run.mkdir()
        (run / "train.json").write_text(json.dumps({"batch_size": 32, "prediction": pred}))
        rows = "".join(f"{s},0,{1.0 / s:.6f},5e-4,50\n" for s in range(1, steps + 1))
        (run / "loss.csv").write_text("step,epoch,loss,lr,samples_per_s\n" + rows)
        runs.append(str(run))
    png = tmp_path / "curves.png"
    out = _script("loss_curves.py", str(png), *runs, "--by-objective", "--max-samples", "160")
    assert png.stat().st_size > 0
    assert "short: 4 points, loss 1.000 at 32 samples -> 0.250 at 128" in out
    assert "long: 5 points, loss 1.000 at 32 samples -> 0.200 at 160" in out
