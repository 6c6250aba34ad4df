"""``d4m export --to hf``: a run as a Hugging Face dataset that ``datasets.load_from_disk`` reads back."""

import json

import numpy as np
import pytest
from PIL import Image

from d4m.cli.main import main
from tests.conftest import shared_path

datasets = pytest.importorskip("datasets")


def test_export_round_trip(tmp_path, cifar_subset, capsys):
    run = tmp_path / "run"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "2",
                 "--out", str(run)]) == 0
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = tmp_path / "hf"
    assert main(["export", "--run", str(run), "--to", "hf", str(out), "--teacher", teacher]) == 0
    ds = datasets.load_from_disk(str(out))
    rows = {json.loads(line)["file"]: json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()}
    assert len(ds) == 20 and set(ds["file"]) == set(rows)
    assert ds.features["label"].names[:3] == ["airplane", "automobile", "bird"]
    for item in ds:
        m = rows[item["file"]]
        assert item["label"] == m["class_index"] and item["class_name"] == m["class_name"]
        assert np.array_equal(np.asarray(item["image"].convert("RGB")),
                              np.asarray(Image.open(run / item["file"]).convert("RGB")))
        assert len(item["soft_label"]) == 10
    # the teacher (91.7% on CIFAR-10) mostly agrees with the labels of real images
    agree = np.mean([int(np.argmax(item["soft_label"])) == item["label"] for item in ds])
    assert agree >= 0.6
    assert main(["export", "--run", str(run), "--to", "hf", str(out)]) == 2  # not empty without --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--to", "zip", str(tmp_path / "z")]) == 2
