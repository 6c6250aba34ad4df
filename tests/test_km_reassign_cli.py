"""``--km-reassign``: the flag reaches the online k-means of every class and is part of the prototypes' config."""

import yaml

import d4m.prototypes.stage as stage
from d4m.cli.main import main
from tests.ttm_helpers import make_folder, one_thread  # noqa: F401 (autouse fixture)


def test_flag_reaches_the_kmeans_and_the_config(tmp_path, tiny_sd, monkeypatch, capsys):
    data = make_folder(tmp_path / "data", per_class=5, size=16, prefix=False)
    made = []
    real = stage.OnlineKMeans

    def spy(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(stage, "OnlineKMeans", spy)
    common = ["prototypes", "--data", f"folder:{data}", "--model", str(tiny_sd), "--size", "64", "--ipc", "2",
              "--workers", "0"]
    assert main(common + ["--km-reassign", "--out", str(tmp_path / "a")]) == 0
    assert made and all(m == {"reassign_ratio": 0.01, "batch_size": 20} for m in made)  # one per class
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["km_reassign"] == 0.01
    made.clear()
    assert main(common + ["--out", str(tmp_path / "b")]) == 0
    assert all(m["reassign_ratio"] == 0.0 for m in made)  # off by default: the paper's plain update
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["km_reassign"] is None
    assert main(common + ["--km-reassign", "2", "--out", str(tmp_path / "c")]) == 2
    assert "--km-reassign 2.0" in capsys.readouterr().err
