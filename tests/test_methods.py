"""Baselines and ablations: selection math, select / stm / sweep run directories, the decode alias."""

import json

import pytest
import torch
from PIL import Image

from d4m.cli.main import main
from d4m.methods.select import coverage_radius, herding, kcenter_greedy, random_subset
from d4m.methods.stm import BNStatLoss, recover
from tests.conftest import shared_path


def test_kcenter_covers_better_than_random():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200, 5, generator=g) + 6 * torch.randn(1, 5, generator=g) for _ in range(6)])
    chosen = kcenter_greedy(x, 6)
    assert len(set(chosen)) == 6
    assert chosen[0] == int(torch.cdist(x.mean(0, keepdim=True), x).argmin())
    rand = [coverage_radius(x, random_subset(len(x), 6, torch.Generator().manual_seed(s))) for s in range(20)]
    assert coverage_radius(x, chosen) < min(rand)
    # each next centre is the point farthest from the chosen ones
    d = torch.cdist(x.double(), x[chosen[:3]].double()).min(1).values
    assert chosen[3] == int(d.argmax())


def test_herding_tracks_the_mean():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g) * torch.linspace(0.5, 3, 8)
    chosen = herding(x, 10)
    assert len(set(chosen)) == 10
    assert chosen[0] == int(((x - x.mean(0)) ** 2).sum(1).argmin())
    err = float((x[chosen].mean(0) - x.mean(0)).norm())
    rand = [float((x[random_subset(300, 10, torch.Generator().manual_seed(s))].mean(0) - x.mean(0)).norm())
            for s in range(20)]
    assert err < min(rand)
    with pytest.raises(ValueError):
        herding(x, 301)


def test_stm_lowers_the_bn_statistics_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()
    with torch.no_grad():  # running statistics of brighter images than the starting ones
        h = net[0](0.5 + 0.5 * torch.rand(6, 3, 16, 16))
        net[1].running_mean.copy_(h.mean((0, 2, 3)))
        net[1].running_var.copy_(h.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False))
    x0 = 0.3 * torch.rand(6, 3, 16, 16)
    out, trace = recover(net, x0, torch.tensor([0, 1, 2, 0, 1, 2]), iterations=30, lr=0.05, bn_weight=1.0)
    assert trace["bn"][1] < 0.5 * trace["bn"][0] and trace["ce"][1] < trace["ce"][0]
    assert out.mean() > x0.mean() + 0.1
    assert out.shape == x0.shape and 0 <= out.min() and out.max() <= 1 and not torch.equal(out, x0)
    assert not net[1]._forward_hooks  # hooks removed
    with pytest.raises(Exception, match="BatchNorm2d"):
        BNStatLoss(torch.nn.Linear(2, 2))


@pytest.fixture(scope="module")
def random_run(tmp_path_factory, cifar_subset):
    out = tmp_path_factory.mktemp("methods") / "random"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "2",
                 "--out", str(out)]) == 0
    return out


def test_random_run_layout(random_run, cifar_subset):
    rows = [json.loads(line) for line in (random_run / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and (random_run / "config.yaml").is_file()
    assert json.loads((random_run / "log.jsonl").read_text().splitlines()[-1])["stage"] == "select-random"
    for r in rows:
        img = Image.open(random_run / r["file"])
        assert img.size == (32, 32) and r["file"].split("/")[1].endswith(r["class_name"])
        assert f"/{r['class_name']}/" in r["source"]  # a real image of that class
    assert len({r["source"] for r in rows}) == 20


def test_finished_select_is_not_redone(tmp_path, cifar_subset):
    """Rerunning a finished selection (e.g. an experiment script resuming) keeps its files and log untouched."""
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = tmp_path / "kc"
    args = ["select", "--method", "kcenter", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--out", str(out),
            "--features", "teacher", "--teacher", teacher, "--max-per-class", "4"]
    assert main(args) == 0
    def state():  # config.yaml is rewritten with the same text on every call; everything else must stay as it was
        return {p: p.read_bytes() if p.name == "config.yaml" else p.stat().st_mtime_ns
                for p in out.rglob("*") if p.is_file()}

    files = state()
    assert main(args) == 0
    assert state() == files
    missing = next((out / "images").rglob("*.png"))
    missing.unlink()
    assert main(args) == 0 and missing.is_file()  # an incomplete run is made again


def test_kcenter_teacher_features_and_herding_codec(tmp_path, cifar_subset, tiny_sd):
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = tmp_path / "kc"
    assert main(["select", "--method", "kcenter", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--out",
                 str(out), "--features", "teacher", "--teacher", teacher, "--max-per-class", "8"]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {r["features"] for r in rows} == {"teacher"}
    out2 = tmp_path / "herd"
    assert main(["select", "--method", "herding", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--out",
                 str(out2), "--codec", "model", "--model", str(tiny_sd), "--size", "32", "--max-per-class", "4"]) == 0
    assert len(list((out2 / "images").glob("*/*.png"))) == 10


def test_select_errors_name_the_flag(tmp_path, cifar_subset, capsys):
    assert main(["select", "--method", "kcenter", "--data", f"folder:{cifar_subset}", "--out", str(tmp_path / "x"),
                 "--features", "teacher"]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main(["select", "--method", "random", "--data", f"folder:{tmp_path}/none", "--out",
                 str(tmp_path / "y")]) == 2


def test_stm_run(tmp_path, random_run):
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = tmp_path / "stm"
    assert main(["stm", "--run", str(random_run), "--teacher", teacher, "--out", str(out), "--iterations", "2",
                 "--batch-size", "20"]) == 0
    src = sorted(p.relative_to(random_run) for p in (random_run / "images").glob("*/*.png"))
    assert sorted(p.relative_to(out) for p in (out / "images").glob("*/*.png")) == src
    assert any((out / p).read_bytes() != (random_run / p).read_bytes() for p in src)
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["method"] for r in rows} == {"stm"} and "stm" in (out / "config.yaml").read_text()


def test_decode_alias_and_sweep(tmp_path, cifar_subset, tiny_sd):
    run = tmp_path / "d"
    assert main(["select", "--method", "decode", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--out", str(run),
                 "--model", str(tiny_sd), "--size", "32", "--max-per-class", "3"]) == 0
    text = (run / "config.yaml").read_text()
    assert "generator: none" in text and "strength" not in text  # a decode run records no denoiser settings
    assert main(["sweep", "--run", str(run), "--strength", "0.3,0.6"]) == 2  # nothing to sweep in a decode run
    den = tmp_path / "den"
    assert main(["synthesize", "--run", str(run), "--out", str(den), "--generator", "model", "--steps", "4"]) == 0
    assert main(["sweep", "--run", str(den), "--strength", "0.3,0.6", "--batch-size", "10"]) == 0
    for s in ("0.3", "0.6"):
        sub = den / "sweep" / f"strength-{s}"
        assert len(list((sub / "images").glob("*/*.png"))) == 10
        assert f"strength: {s}" in (sub / "config.yaml").read_text()
        assert (sub / "prototypes.safetensors").read_bytes() == (run / "prototypes.safetensors").read_bytes()
    assert main(["sweep", "--run", str(run), "--strength", "0.5,x"]) == 2
